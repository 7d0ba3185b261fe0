"""Sidebar panels (3D viewport, tab "Edit3D"). They only read `scene.edit3d` and
`window_manager.edit3d`."""

from __future__ import annotations

from typing import Any

import bpy

from . import edit_preview, weights
from .events import ACTIVE_JOB_STATES

STATUS_ICONS = {
    "running": "PLAY",
    "interrupted": "PAUSE",
    "finished": "CHECKMARK",
    "failed": "ERROR",
    "cancelled": "CANCEL",
}
CONNECTION_ICONS = {
    "DISCONNECTED": "UNLINKED",
    "CONNECTING": "SORTTIME",
    "CONNECTED": "LINKED",
    "LOST": "ERROR",
}


def format_eta(seconds: float) -> str:
    """ETA text: "" when unknown (negative)."""
    if seconds < 0:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_text(phase: str, step: int, total: int) -> str:
    """What the one bar says beside its share: the running phase and its steps."""
    counted = f"{step}/{total}" if total else ""
    return f"{phase} {counted}".strip()


def draw_job(layout: Any, status: Any) -> None:
    """Progress bar, ETA and cancel of the current job (every panel that starts one)."""
    if status.job_state == "NONE":
        return
    box = layout.box()
    header = box.row()
    header.label(text=f"{status.job_kind or 'job'}: {status.job_state.lower()}", icon="SETTINGS")
    if status.job_state in ACTIVE_JOB_STATES:
        header.operator("edit3d.cancel_job", text="", icon="CANCEL")
    if status.job_state == "QUEUED":
        box.label(text=f"{status.queue_position} job(s) ahead")
    elif status.job_state == "RUNNING":
        text = progress_text(status.phase, status.step, status.total) or "working"
        eta = format_eta(status.eta_s)
        if eta:
            text += f"  ETA {eta}"
        box.progress(factor=status.progress, type="BAR", text=text)
        if status.loss > 0:
            box.label(text=f"loss {status.loss:.4f}")
    if status.job_message:
        box.label(text=status.job_message, icon="INFO")


def draw_job_list(layout: Any, status: Any) -> None:
    """Every job of the open session: kind, session, state, progress, ETA, cancel."""
    for row in status.jobs:
        box = layout.box()
        header = box.row()
        icon = STATUS_ICONS.get(row.state, "SORTTIME")
        header.label(text=f"{row.kind.removeprefix('job.')}  {row.session_id}", icon=icon)
        if row.state in ("queued", "running"):
            header.operator("edit3d.cancel_job", text="", icon="CANCEL").job_id = row.job_id
        if row.state == "queued":
            box.label(text=f"queued, {row.queue_position} job(s) ahead")
        elif row.state == "running":
            text = progress_text(row.phase, row.step, row.total) or "running"
            eta = format_eta(row.eta_s)
            text += f"  ETA {eta}" if eta else ""
            box.progress(factor=row.progress, type="BAR", text=text)
        else:
            box.label(text=f"{row.state}: {row.message}" if row.message else row.state)


class Edit3DPanelMixin:
    """Shared placement of every Edit3D panel."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Edit3D"


class EDIT3D_UL_turns(bpy.types.UIList):
    """Turn history: status, id, instruction."""

    def draw_item(
        self, context: Any, layout: Any, data: Any, item: Any, icon: Any, active_data: Any,
        active_propname: str, index: int = 0, flt_flag: int = 0,
    ) -> None:  # fmt: skip
        head = context.scene.edit3d.head
        row = layout.row(align=True)
        row.label(text="", icon=STATUS_ICONS.get(item.status, "QUESTION"))
        marker = "● " if item.turn_id == head else ""
        row.label(text=f"{marker}{item.turn_id}")
        row.label(text=item.instruction or item.kind)


class EDIT3D_UL_sessions(bpy.types.UIList):
    """Sessions on the sidecar: name, id, turns."""

    def draw_item(
        self, context: Any, layout: Any, data: Any, item: Any, icon: Any, active_data: Any,
        active_propname: str, index: int = 0, flt_flag: int = 0,
    ) -> None:  # fmt: skip
        row = layout.row(align=True)
        current = item.session_id == context.scene.edit3d.session_id
        row.label(text=item.label, icon="FILE_3D" if current else "FILE")
        row.label(text=f"{item.session_id}  {item.turn_count} turns" + (" (busy)" * item.busy))


def draw_weights(layout: Any, status: Any) -> None:
    """The sidecar's missing weights, before a job that needs them is tried."""
    missing = weights.split_names(status.weights_missing)
    capabilities = weights.split_names(status.capabilities)
    if weights.TINY_PROFILE_CAPABILITY in capabilities:
        layout.label(text="Tiny profile: random miniature networks, no weights needed",
                     icon="INFO")  # fmt: skip
    elif missing:
        layout.label(text=f"Missing weights: {', '.join(missing)}", icon="ERROR")
        layout.label(text="Jobs needing them are not sent: edit3d models fetch NAME")
    else:
        layout.label(text="All model weights present", icon="CHECKMARK")


class VIEW3D_PT_edit3d_connection(Edit3DPanelMixin, bpy.types.Panel):
    bl_label = "Edit3D Connection"

    def draw(self, context: Any) -> None:
        status = context.window_manager.edit3d
        layout = self.layout
        state = status.connection_state
        row = layout.row()
        row.label(text=state.title(), icon=CONNECTION_ICONS.get(state, "QUESTION"))
        if state in ("DISCONNECTED",):
            row.operator("edit3d.connect", icon="LINKED")
        else:
            row.operator("edit3d.disconnect", icon="UNLINKED")
        if status.connection_message:
            layout.label(text=status.connection_message, icon="INFO")
        if state == "CONNECTED":
            col = layout.column(align=True)
            col.label(text=f"Sidecar {status.server_version}")
            col.label(text=f"Device: {status.device}")
            if status.gpu_memory_total_gb > 0:
                col.label(
                    text=f"GPU memory: {status.gpu_memory_free_gb:.1f} free of "
                    f"{status.gpu_memory_total_gb:.1f} GB"
                )
            draw_weights(col, status)
        for report in list(status.reports)[-3:]:
            layout.label(text=report.message, icon="ERROR" if report.level == "ERROR" else "INFO")
        if len(status.reports):
            layout.operator("edit3d.clear_reports", icon="X")


class VIEW3D_PT_edit3d_jobs(Edit3DPanelMixin, bpy.types.Panel):
    bl_label = "Jobs"
    bl_parent_id = "VIEW3D_PT_edit3d_connection"

    def draw(self, context: Any) -> None:
        status = context.window_manager.edit3d
        if not len(status.jobs):
            self.layout.label(text="No jobs")
            return
        draw_job_list(self.layout, status)


class VIEW3D_PT_edit3d_scene(Edit3DPanelMixin, bpy.types.Panel):
    bl_label = "Scene"
    bl_parent_id = "VIEW3D_PT_edit3d_connection"

    def draw(self, context: Any) -> None:
        status = context.window_manager.edit3d
        layout = self.layout
        props = context.scene.edit3d
        if props.session_id:
            label = status.session_label or props.session_id
            backend = status.session_backend or "default backend"
            layout.label(text=f"Open: {label} ({props.session_id}), {backend}", icon="FILE_3D")
        layout.prop(props, "session_name", text="New session")
        layout.prop(props, "source")
        if props.source == "DATASET":
            layout.prop(props, "dataset_path")
        elif props.source == "UPLOAD":
            layout.prop(props, "upload_dir")
        else:
            layout.prop(props, "nerfstudio_run")
        layout.prop(props, "preset")
        if props.source != "NERFSTUDIO_RUN":  # a run's model decides its backend
            layout.prop(props, "backend")
        row = layout.row(align=True)
        row.operator("edit3d.create_session", icon="ADD")
        if len(status.sessions):
            layout.template_list(
                "EDIT3D_UL_sessions", "", status, "sessions", status, "active_session_index", rows=3
            )
        row = layout.row(align=True)
        row.operator("edit3d.open_session", icon="FILEBROWSER")
        row.operator("edit3d.list_sessions", text="", icon="FILE_REFRESH")
        layout.prop(props, "camera_collection")
        row = layout.row(align=True)
        row.operator("edit3d.import_cameras", icon="CAMERA_DATA")
        row.operator("edit3d.import_transforms", text="", icon="FILEBROWSER")
        row = layout.row(align=True)
        row.prop(props, "base_steps")
        row.operator("edit3d.train_base", icon="PLAY")
        draw_job(layout, context.window_manager.edit3d)


class VIEW3D_PT_edit3d_turns(Edit3DPanelMixin, bpy.types.Panel):
    bl_label = "Turns"
    bl_parent_id = "VIEW3D_PT_edit3d_connection"

    def draw(self, context: Any) -> None:
        layout = self.layout
        props = context.scene.edit3d
        layout.template_list(
            "EDIT3D_UL_turns", "", props, "turns", props, "active_turn_index", rows=4
        )
        row = layout.row(align=True)
        row.operator("edit3d.checkout_turn", icon="LOOP_BACK")
        selected = props.turns[props.active_turn_index] if (
            0 <= props.active_turn_index < len(props.turns)) else None  # fmt: skip
        if selected is not None and selected.status == "interrupted":
            row.operator("edit3d.resume_turn", icon="PLAY")
            row.operator("edit3d.discard_turn", icon="TRASH")
        if selected is not None and (selected.edit_queries or selected.keep_queries):
            layout.label(text=f"edit: {selected.edit_queries}  keep: {selected.keep_queries}")
        col = layout.column()
        col.prop(props, "instruction")
        col.prop(props, "edit_queries")
        col.prop(props, "keep_queries")
        row = col.row(align=True)
        row.prop(props, "auto_caption")
        sub = row.row()
        sub.enabled = not props.auto_caption
        sub.prop(props, "caption", text="")
        row = col.row(align=True)
        row.prop(props, "mode", expand=True)
        col.prop(props, "update")
        col.prop(props, "turn_steps")
        col.prop(props, "seed")
        _draw_editor(layout, props)
        row = layout.row(align=True)
        row.operator("edit3d.preview_masks", icon="MOD_MASK")
        row.operator("edit3d.preview_edit", icon="IMAGE_DATA")
        row.operator("edit3d.run_turn", icon="PLAY")
        _draw_mask_preview(layout, props)
        _draw_edit_preview(layout, props)
        draw_job(layout, context.window_manager.edit3d)


def _draw_editor(layout: Any, props: Any) -> None:
    """The collapsed Editor box: an override switch per setting, its value when on."""
    box = layout.box()
    icon = "DISCLOSURE_TRI_DOWN" if props.show_editor else "DISCLOSURE_TRI_RIGHT"
    box.prop(props, "show_editor", icon=icon, emboss=False)
    if not props.show_editor:
        return
    editor = props.editor
    for switch, names in edit_preview.OVERRIDES:
        row = box.row(align=True)
        row.prop(editor, switch)
        if not getattr(editor, switch):
            row.label(text="method default")
            continue
        for name in names:
            row.prop(editor, name, text="")
    box.prop(props, "preview_seeds")


def _draw_edit_preview(layout: Any, props: Any) -> None:
    status = bpy.context.window_manager.edit3d
    if props.edit_preview_image is None:
        return
    box = layout.box()
    seeds = ", ".join(str(item.seed) for item in status.preview_seeds)
    box.label(text=f"Edit preview: before | mask | after (seeds {seeds})", icon="IMAGE_DATA")
    box.operator("edit3d.show_image", text="Show Preview").image_name = (
        props.edit_preview_image.name
    )
    row = box.row(align=True)
    if len(status.preview_seeds) > 1:
        row.prop(status, "preview_choice")
    row.operator("edit3d.use_preview_settings", icon="CHECKMARK")


def _draw_mask_preview(layout: Any, props: Any) -> None:
    status = bpy.context.window_manager.edit3d
    if props.mask_image is None and props.heatmap_image is None:
        return
    box = layout.box()
    if status.mask_caption:
        box.label(text=f"caption: {status.mask_caption}")
    for image in (props.heatmap_image, props.mask_image):
        if image is None:
            continue
        row = box.row()
        row.template_icon(icon_value=image.preview_ensure().icon_id, scale=5.0)
        row.operator("edit3d.show_image", text=image.name, icon="IMAGE").image_name = image.name


class VIEW3D_PT_edit3d_preview(Edit3DPanelMixin, bpy.types.Panel):
    bl_label = "Preview"
    bl_parent_id = "VIEW3D_PT_edit3d_connection"

    def draw(self, context: Any) -> None:
        layout = self.layout
        props = context.scene.edit3d
        row = layout.row(align=True)
        row.operator("edit3d.render_camera", icon="RENDER_STILL")
        row.prop(props, "render_before")
        row = layout.row(align=True)
        row.prop(props, "live_preview")
        sub = row.row()
        sub.active = props.live_preview
        sub.prop(props, "live_interval_s")
        if props.preview_image is None:
            return
        row = layout.row()
        for image in (props.before_image, props.preview_image):
            if image is not None:
                col = row.column()
                col.label(text="Before" if image == props.before_image else "After")
                col.template_icon(icon_value=image.preview_ensure().icon_id, scale=6.0)
        image = props.preview_image
        layout.operator("edit3d.show_image", icon="IMAGE").image_name = image.name


class VIEW3D_PT_edit3d_export(Edit3DPanelMixin, bpy.types.Panel):
    bl_label = "Export"
    bl_parent_id = "VIEW3D_PT_edit3d_connection"

    def draw(self, context: Any) -> None:
        layout = self.layout
        props = context.scene.edit3d
        layout.prop(props, "export_kind")
        layout.prop(props, "export_format")
        layout.prop(props, "export_points")
        layout.prop(props, "export_views")
        row = layout.row(align=True)
        row.operator("edit3d.export", text="Into Scene", icon="IMPORT").into_scene = True
        row.operator("edit3d.export", text="Save on Sidecar", icon="FILE_TICK").into_scene = False
        row = layout.row(align=True)
        row.prop(props, "export_save_path")
        row.operator("edit3d.download_export", text="", icon="IMPORT")
        layout.operator("edit3d.refine", icon="SHADERFX")
        draw_job(layout, context.window_manager.edit3d)


classes = (
    EDIT3D_UL_turns,
    EDIT3D_UL_sessions,
    VIEW3D_PT_edit3d_connection,
    VIEW3D_PT_edit3d_jobs,
    VIEW3D_PT_edit3d_scene,
    VIEW3D_PT_edit3d_turns,
    VIEW3D_PT_edit3d_preview,
    VIEW3D_PT_edit3d_export,
)
