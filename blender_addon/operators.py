"""Operators: each sends one request (never waits) or works on local scene data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import StringProperty

from . import (
    connection,
    download,
    edit_preview,
    events,
    local_sidecar,
    scene_io,
    upload,
    weights,
)
from .preferences import get_preferences
from .props import DEFAULT_BACKEND_ITEM, DEFAULT_UPDATE_ITEM


def split_queries(text: str) -> tuple[str, ...]:
    """Comma-separated queries → a tuple: "hair, red shirt" → ("hair", "red shirt")."""
    return tuple(q.strip() for q in text.split(",") if q.strip())


class _SidecarOperator:
    """Shared checks of operators that talk to the sidecar."""

    needs_session = True

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        props = context.scene.edit3d
        return connection.is_ready() and (bool(props.session_id) or not cls.needs_session)

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            return self.run(context)
        except ConnectionError as exc:
            self.report({"ERROR"}, f"Not sent: {exc}")
        except ValueError as exc:  # a field the protocol refuses (too long, out of range)
            self.report({"ERROR"}, str(exc))
        return {"CANCELLED"}

    def run(self, context: bpy.types.Context) -> set[str]:
        raise NotImplementedError

    def submit(self, context: bpy.types.Context, message: Any, route=None) -> set[str]:
        events.submit_job(context, message, route)
        return {"FINISHED"}

    def lacks_weights(self, context: bpy.types.Context, job: str, needed: Any) -> bool:
        """Report and return True when the sidecar lacks weights `needed` (nothing is sent)."""
        status = context.window_manager.edit3d
        missing = weights.missing_for(
            needed,
            weights.split_names(status.weights_missing),
            weights.split_names(status.capabilities),
        )
        if missing:
            self.report({"ERROR"}, weights.refusal(job, missing))
        return bool(missing)


class EDIT3D_OT_connect(bpy.types.Operator):
    """Connect to the sidecar named in the add-on preferences"""

    bl_idname = "edit3d.connect"
    bl_label = "Connect"

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = connection.settings_from_preferences(get_preferences(context))
        try:
            connection.connect(context, settings)
        except (PermissionError, ValueError, OSError) as exc:
            self.report({"ERROR"}, f"Cannot connect: {exc}")
            return {"CANCELLED"}
        except ImportError as exc:
            self.report({"ERROR"}, f"The bundled pyzmq/msgpack wheels did not load: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Connecting to {connection.endpoint_label(settings)}")
        return {"FINISHED"}


class EDIT3D_OT_disconnect(bpy.types.Operator):
    """Close the connection (jobs on the sidecar keep running)"""

    bl_idname = "edit3d.disconnect"
    bl_label = "Disconnect"

    def execute(self, context: bpy.types.Context) -> set[str]:
        connection.disconnect(context)
        return {"FINISHED"}


class EDIT3D_OT_start_sidecar(bpy.types.Operator):
    """Start a sidecar on this machine with the Python set in the preferences"""

    bl_idname = "edit3d.start_sidecar"
    bl_label = "Start Local Sidecar"

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = get_preferences(context)
        workdir = bpy.path.abspath(prefs.sidecar_workdir) if prefs.sidecar_workdir else ""
        if not workdir:
            self.report({"ERROR"}, "Set the sidecar workdir in the add-on preferences")
            return {"CANCELLED"}
        try:
            conn_file = local_sidecar.start(
                bpy.path.abspath(prefs.sidecar_python), workdir,
                device=prefs.sidecar_device, tiny=prefs.sidecar_tiny,
                settings=connection.settings_from_preferences(prefs),
            )  # fmt: skip
        except (OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Cannot start the sidecar: {exc}")
            return {"CANCELLED"}
        prefs.connection_file = str(conn_file)
        self.report({"INFO"}, f"Sidecar starting; connecting once it writes {conn_file}")
        return {"FINISHED"}


class EDIT3D_OT_stop_sidecar(bpy.types.Operator):
    """Stop the sidecar this Blender started (sessions stay on disk)"""

    bl_idname = "edit3d.stop_sidecar"
    bl_label = "Stop Local Sidecar"

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not local_sidecar.stop(context):
            self.report({"WARNING"}, "No sidecar started from this Blender is running")
            return {"CANCELLED"}
        return {"FINISHED"}


class EDIT3D_OT_create_session(_SidecarOperator, bpy.types.Operator):
    """Create a session on the sidecar from the chosen dataset or nerfstudio run"""

    bl_idname = "edit3d.create_session"
    bl_label = "Create Session"
    needs_session = False

    def run(self, context: bpy.types.Context) -> set[str]:
        props = context.scene.edit3d
        msgs = connection.messages()
        kwargs: dict[str, Any] = {"name": props.session_name or "scene", "preset": props.preset}
        if props.backend != DEFAULT_BACKEND_ITEM and props.source != "NERFSTUDIO_RUN":
            kwargs["backend"] = props.backend  # a run's model decides its own
        if props.source == "DATASET":
            kwargs["dataset_path"] = props.dataset_path
        elif props.source == "NERFSTUDIO_RUN":
            kwargs["nerfstudio_run"] = props.nerfstudio_run
        else:
            return self._create_for_upload(context, kwargs)
        if not any(kwargs.get(k) for k in ("dataset_path", "nerfstudio_run")):
            self.report({"ERROR"}, "Enter the dataset path (or run config) on the sidecar machine")
            return {"CANCELLED"}
        try:
            message = msgs.SessionCreate(**kwargs)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        connection.request(context, message, _on_session_created, _session_error)
        return {"FINISHED"}

    def _create_for_upload(self, context: bpy.types.Context, kwargs: dict) -> set[str]:
        root = Path(bpy.path.abspath(context.scene.edit3d.upload_dir))
        try:
            upload.dataset_files(root)
        except OSError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}

        def created(ctx: Any, summary: Any) -> None:
            _on_session_created(ctx, summary)
            try:
                upload.start(ctx, summary.session_id, root)
            except OSError as exc:
                connection.report_error(ctx, f"Upload failed to start: {exc}")

        message = connection.messages().SessionCreate(**kwargs)
        connection.request(context, message, created, _session_error)
        return {"FINISHED"}


def _on_session_created(context: Any, summary: Any) -> None:
    props = context.scene.edit3d
    props.session_id = summary.session_id
    props.uploaded_dataset = ""
    props.event_seq = -1
    events.open_session(context, summary.session_id)


def _session_error(context: Any, text: str) -> None:
    connection.report_error(context, f"Session request refused: {text}")


class EDIT3D_OT_open_session(_SidecarOperator, bpy.types.Operator):
    """Open an existing session on the sidecar (refreshes turns and cameras)"""

    bl_idname = "edit3d.open_session"
    bl_label = "Open Session"
    needs_session = False

    session_id: StringProperty(name="Session")

    def run(self, context: bpy.types.Context) -> set[str]:
        status = context.window_manager.edit3d
        props = context.scene.edit3d
        listed = status.sessions[status.active_session_index].session_id if (
            0 <= status.active_session_index < len(status.sessions)) else ""  # fmt: skip
        session_id = self.session_id or listed or props.session_id
        if not session_id:
            self.report({"ERROR"}, "No session id given")
            return {"CANCELLED"}
        if session_id != props.session_id:
            props.event_seq = -1
        connection.request(
            context, connection.messages().SessionOpen(session_id=session_id),
            events.on_session_summary, _session_error,
        )  # fmt: skip
        return {"FINISHED"}


class EDIT3D_OT_list_sessions(_SidecarOperator, bpy.types.Operator):
    """Refresh the list of sessions kept by the sidecar"""

    bl_idname = "edit3d.list_sessions"
    bl_label = "Refresh Sessions"
    needs_session = False

    def run(self, context: bpy.types.Context) -> set[str]:
        events.refresh_sessions(context)
        return {"FINISHED"}


class EDIT3D_OT_import_cameras(bpy.types.Operator):
    """Create one camera per dataset view of the open session, at its exact pose"""

    bl_idname = "edit3d.import_cameras"
    bl_label = "Import Dataset Cameras"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - it adds camera objects

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return connection.LINK.views is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            cameras = events.import_session_cameras(context)
        except (LookupError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {len(cameras)} cameras")
        return {"FINISHED"}


class EDIT3D_OT_import_transforms(bpy.types.Operator):
    """Import the cameras of a local nerfstudio transforms.json (no sidecar needed)"""

    bl_idname = "edit3d.import_transforms"
    bl_label = "Import transforms.json Cameras"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - it adds camera objects

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            names, cameras = scene_io.read_transforms_json(bpy.path.abspath(self.filepath))
        except (OSError, ValueError, KeyError) as exc:
            self.report({"ERROR"}, f"Cannot read {self.filepath}: {exc}")
            return {"CANCELLED"}
        coll = context.scene.edit3d.camera_collection
        scene_io.import_cameras(context.scene, names, cameras, coll)
        self.report({"INFO"}, f"Imported {len(names)} cameras")
        return {"FINISHED"}


class EDIT3D_OT_train_base(_SidecarOperator, bpy.types.Operator):
    """Train the base NeRF of the session on the sidecar"""

    bl_idname = "edit3d.train_base"
    bl_label = "Train Base"

    def run(self, context: bpy.types.Context) -> set[str]:
        props = context.scene.edit3d
        msg = connection.messages().JobTrainBase(
            session_id=props.session_id,
            steps=props.base_steps or None,  # 0: the preset decides
            preset=props.preset,
            dataset_path=props.uploaded_dataset or None,
            **live_preview_fields(context),
        )
        return self.submit(context, msg)


def live_preview_fields(context: bpy.types.Context) -> dict[str, Any]:
    """Preview settings of a training job: frames from the scene camera while live preview
    is on (the sidecar's first dataset view when the scene has none), no frames when off."""
    if not context.scene.edit3d.live_preview:
        return {"preview_every": 0}  # frames would be dropped unseen: spare the sidecar
    camera = context.scene.camera
    if camera is None or camera.type != "CAMERA":
        return {}
    return {"preview_camera": scene_io.camera_from_object(camera, context.scene)}


def _active_camera(op: bpy.types.Operator, context: bpy.types.Context) -> Any:
    camera = context.scene.camera
    if camera is None or camera.type != "CAMERA":
        op.report({"ERROR"}, "The scene has no active camera")
        return None
    return camera


class EDIT3D_OT_preview_masks(_SidecarOperator, bpy.types.Operator):
    """Segment the edit/keep regions in the active camera's view (caption, heatmap, mask)"""

    bl_idname = "edit3d.preview_masks"
    bl_label = "Preview Masks"

    def run(self, context: bpy.types.Context) -> set[str]:
        props = context.scene.edit3d
        camera = _active_camera(self, context)
        if camera is None:
            return {"CANCELLED"}
        has_caption = not props.auto_caption and bool(props.caption)
        needed = weights.segmentation_needs(has_queries=True, has_caption=has_caption)
        if self.lacks_weights(context, "a mask preview", needed):
            return {"CANCELLED"}
        msg = connection.messages().JobPreviewMasks(
            session_id=props.session_id,
            camera=scene_io.camera_from_object(camera, context.scene),
            edit_queries=split_queries(props.edit_queries),
            keep_queries=split_queries(props.keep_queries),
            caption=None if props.auto_caption or not props.caption else props.caption,
        )
        return self.submit(context, msg)


class EDIT3D_OT_run_turn(_SidecarOperator, bpy.types.Operator):
    """Run an editing turn from the checked-out turn with the instruction and regions"""

    bl_idname = "edit3d.run_turn"
    bl_label = "Run Turn"

    def run(self, context: bpy.types.Context) -> set[str]:
        props = context.scene.edit3d
        if not props.instruction.strip():
            self.report({"ERROR"}, "Write an instruction first")
            return {"CANCELLED"}
        if self.lacks_weights(context, "an editing turn", _turn_needs(props)):
            return {"CANCELLED"}
        under = events.active_turn_job(context.window_manager.edit3d, props.session_id)
        msg = connection.messages().JobRunTurn(
            session_id=props.session_id,
            instruction=props.instruction,
            edit_queries=split_queries(props.edit_queries),
            keep_queries=split_queries(props.keep_queries),
            caption=None if props.auto_caption or not props.caption else props.caption,
            mode=props.mode,
            update=None if props.update == DEFAULT_UPDATE_ITEM else props.update,
            steps=props.turn_steps or None,  # 0: the preset decides
            parent_turn=None if under is not None else props.head or None,
            after_job=None if under is None else under.job_id,
            seed=props.seed,
            editor_settings=edit_preview.editor_settings(props.editor, connection.messages()),
            **live_preview_fields(context),
        )
        if under is not None:
            self.report({"INFO"}, f"Queued on top of the {under.state} turn job {under.job_id}: "
                        "its turn becomes this turn's parent")  # fmt: skip
        return self.submit(context, msg)


class EDIT3D_OT_preview_edit(_SidecarOperator, bpy.types.Operator):
    """Show what the turn would do to the active camera's view: render, mask, edit and fuse
    with the turn fields and editor settings, once per seed (before | mask | after)"""

    bl_idname = "edit3d.preview_edit"
    bl_label = "Preview Edit"

    def run(self, context: bpy.types.Context) -> set[str]:
        props = context.scene.edit3d
        if not props.instruction.strip():
            self.report({"ERROR"}, "Write an instruction first")
            return {"CANCELLED"}
        camera = _active_camera(self, context)
        if camera is None or self.lacks_weights(context, "an edit preview", _turn_needs(props)):
            return {"CANCELLED"}
        types = connection.messages()
        msg = types.JobPreviewEdit(
            session_id=props.session_id,
            camera=scene_io.camera_from_object(camera, context.scene),
            instruction=props.instruction,
            edit_queries=split_queries(props.edit_queries),
            keep_queries=split_queries(props.keep_queries),
            caption=None if props.auto_caption or not props.caption else props.caption,
            mode=props.mode,
            seed=props.seed,
            seeds=props.preview_seeds,
            editor_settings=edit_preview.editor_settings(props.editor, types),
        )
        sent = edit_preview.editor_values(props.editor)
        return self.submit(context, msg, connection.JobRoute(msg.type_name, editor_values=sent))


class EDIT3D_OT_use_preview_settings(bpy.types.Operator):
    """Copy the chosen preview seed and the preview's editor settings into the turn fields"""

    bl_idname = "edit3d.use_preview_settings"
    bl_label = "Use These Settings"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - it changes the turn fields

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return len(context.window_manager.edit3d.preview_seeds) > 0

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            seed = edit_preview.use_preview_settings(context)
        except LookupError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Turn fields set from the preview (seed {seed})")
        return {"FINISHED"}


def _turn_needs(props: Any) -> tuple[str, ...]:
    """Weights the turn the panel describes will load (the add-on always asks for ip2p)."""
    return weights.turn_needs(
        editor="ip2p",
        has_queries=bool(split_queries(props.edit_queries) or split_queries(props.keep_queries)),
        has_caption=not props.auto_caption and bool(props.caption),
        preset=props.preset,
        backend=bpy.context.window_manager.edit3d.session_backend,
    )


class EDIT3D_OT_cancel_job(bpy.types.Operator):
    """Cancel a job on the sidecar (the current one unless a job is named)"""

    bl_idname = "edit3d.cancel_job"
    bl_label = "Cancel Job"

    job_id: StringProperty(name="Job", description="Job to cancel (empty: the current job)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        status = context.window_manager.edit3d
        active = any(row.state in ("queued", "running") for row in status.jobs)
        return connection.is_ready() and (status.job_state in events.ACTIVE_JOB_STATES or active)

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self.job_id and (upload.abort(context) or download.abort(context)):
            return {"FINISHED"}
        try:
            events.cancel_job(context, self.job_id)
        except LookupError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


def _selected_turn(context: bpy.types.Context) -> Any:
    props = context.scene.edit3d
    if 0 <= props.active_turn_index < len(props.turns):
        return props.turns[props.active_turn_index]
    return None


class EDIT3D_OT_checkout_turn(_SidecarOperator, bpy.types.Operator):
    """Make the selected turn the head: undo to it; the next turn branches from it"""

    bl_idname = "edit3d.checkout_turn"
    bl_label = "Check Out Turn"

    def run(self, context: bpy.types.Context) -> set[str]:
        props = context.scene.edit3d
        turn = _selected_turn(context)
        if turn is None:
            self.report({"ERROR"}, "Select a turn in the list")
            return {"CANCELLED"}
        msg = connection.messages().TurnCheckout(session_id=props.session_id, turn_id=turn.turn_id)
        connection.request(context, msg, _refresh_after, _session_error)
        return {"FINISHED"}


def _refresh_after(context: Any, _reply: Any) -> None:
    props = context.scene.edit3d
    events.open_session(context, props.session_id)


class EDIT3D_OT_resume_turn(_SidecarOperator, bpy.types.Operator):
    """Resume the selected interrupted turn from its last checkpoint"""

    bl_idname = "edit3d.resume_turn"
    bl_label = "Resume Turn"

    def run(self, context: bpy.types.Context) -> set[str]:
        turn = _selected_turn(context)
        if turn is None or turn.status != "interrupted":
            self.report({"ERROR"}, "Select an interrupted turn")
            return {"CANCELLED"}
        msg = connection.messages().JobResumeTurn(
            session_id=context.scene.edit3d.session_id,
            turn_id=turn.turn_id,
            **live_preview_fields(context),
        )
        return self.submit(context, msg)


class EDIT3D_OT_discard_turn(_SidecarOperator, bpy.types.Operator):
    """Discard the selected interrupted turn (its partial training is deleted)"""

    bl_idname = "edit3d.discard_turn"
    bl_label = "Discard Turn"

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        # deleting a turn's work cannot be undone in Blender: ask first
        return context.window_manager.invoke_confirm(
            self, event, title="Discard the interrupted turn?",
            message="Its partial training is deleted on the sidecar.", confirm_text="Discard",
        )  # fmt: skip

    def run(self, context: bpy.types.Context) -> set[str]:
        turn = _selected_turn(context)
        if turn is None or turn.status != "interrupted":
            self.report({"ERROR"}, "Select an interrupted turn")
            return {"CANCELLED"}
        msg = connection.messages().JobDiscardTurn(
            session_id=context.scene.edit3d.session_id, turn_id=turn.turn_id
        )
        connection.request(context, msg, _refresh_after, _session_error)
        return {"FINISHED"}


class EDIT3D_OT_refine(_SidecarOperator, bpy.types.Operator):
    """Super-resolution fine-tune of the head turn (paper Sec. 3.3)"""

    bl_idname = "edit3d.refine"
    bl_label = "Refine (Super-Resolution)"

    def run(self, context: bpy.types.Context) -> set[str]:
        props = context.scene.edit3d
        # the add-on sends the fine-tune's default: faces restored
        if self.lacks_weights(context, "the super-resolution fine-tune",
                              weights.refine_needs(faces=True)):  # fmt: skip
            return {"CANCELLED"}
        msg = connection.messages().JobRefine(
            session_id=props.session_id, turn_id=props.head or None
        )
        return self.submit(context, msg)


class EDIT3D_OT_render_camera(_SidecarOperator, bpy.types.Operator):
    """Render the active camera (pose, lens, shift, resolution) from the head turn (and,
    with Before/after, from its parent turn too)"""

    bl_idname = "edit3d.render_camera"
    bl_label = "Render Active Camera"

    def run(self, context: bpy.types.Context) -> set[str]:
        camera = _active_camera(self, context)
        if camera is None:
            return {"CANCELLED"}
        try:
            events.cancel_queued_previews(context)  # the user's render goes first
            events.render_before_after(context, camera)
        except (ConnectionError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class EDIT3D_OT_show_image(bpy.types.Operator):
    """Show an Edit3D image in an Image Editor"""

    bl_idname = "edit3d.show_image"
    bl_label = "Show in Image Editor"

    image_name: StringProperty(name="Image")

    def execute(self, context: bpy.types.Context) -> set[str]:
        image = bpy.data.images.get(self.image_name)
        if image is None:
            self.report({"ERROR"}, f"No image {self.image_name!r} yet")
            return {"CANCELLED"}
        screen = getattr(context, "screen", None)
        areas = [] if screen is None else [a for a in screen.areas if a.type == "IMAGE_EDITOR"]
        if not areas:
            self.report({"WARNING"}, "Open an Image Editor to see the image")
            return {"CANCELLED"}
        for area, shown in zip(areas, self._images(image), strict=False):
            area.spaces.active.image = shown  # before/after side by side given two editors
        return {"FINISHED"}

    @staticmethod
    def _images(image: Any) -> list[Any]:
        before = bpy.data.images.get(events.BEFORE_IMAGE)
        if image.name == events.PREVIEW_IMAGE and before is not None:
            return [before, image]
        return [image]


class EDIT3D_OT_export(_SidecarOperator, bpy.types.Operator):
    """Export the head turn's point cloud or mesh, into the scene and/or as a file, or save
    it as a nerfstudio run on the sidecar"""

    bl_idname = "edit3d.export"
    bl_label = "Export"

    into_scene: bpy.props.BoolProperty(name="Into scene", default=True)

    def run(self, context: bpy.types.Context) -> set[str]:
        props = context.scene.edit3d
        # A nerfstudio run is a folder for nerfstudio's tools: always saved on the sidecar.
        into_scene = self.into_scene and props.export_kind != "nerfstudio_run"
        msg = connection.messages().JobExport(
            session_id=props.session_id,
            turn_id=props.head or None,
            kind=props.export_kind,
            format=props.export_format,
            budget=props.export_points,
            max_views=props.export_views or None,  # 0: every view
            return_arrays=into_scene,
        )
        route = connection.JobRoute("job.export", into_scene=into_scene)
        return self.submit(context, msg, route)


class EDIT3D_OT_download_export(_SidecarOperator, bpy.types.Operator):
    """Download the session's latest exported file into the Save-to folder (resumes a
    stopped download; checked against the sidecar's SHA-256)"""

    bl_idname = "edit3d.download_export"
    bl_label = "Download"

    path: StringProperty(name="File", description="exports/... on the sidecar (empty: latest)")

    def run(self, context: bpy.types.Context) -> set[str]:
        props = context.scene.edit3d
        latest = connection.LINK.export_results[-1].path if connection.LINK.export_results else ""
        remote = self.path or latest
        if not remote:
            self.report({"ERROR"}, "Nothing exported yet: export first")
            return {"CANCELLED"}
        if not props.export_save_path:
            self.report({"ERROR"}, "Choose the Save to folder first")
            return {"CANCELLED"}
        folder = Path(bpy.path.abspath(props.export_save_path))
        try:
            download.start(context, props.session_id, remote, folder)
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot write into {folder}: {exc}")
            return {"CANCELLED"}
        return {"FINISHED"}


class EDIT3D_OT_clear_reports(bpy.types.Operator):
    """Clear the messages kept from the sidecar"""

    bl_idname = "edit3d.clear_reports"
    bl_label = "Clear Messages"

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.window_manager.edit3d.reports.clear()
        return {"FINISHED"}


classes = (
    EDIT3D_OT_connect,
    EDIT3D_OT_disconnect,
    EDIT3D_OT_start_sidecar,
    EDIT3D_OT_stop_sidecar,
    EDIT3D_OT_create_session,
    EDIT3D_OT_open_session,
    EDIT3D_OT_list_sessions,
    EDIT3D_OT_import_cameras,
    EDIT3D_OT_import_transforms,
    EDIT3D_OT_train_base,
    EDIT3D_OT_preview_masks,
    EDIT3D_OT_run_turn,
    EDIT3D_OT_preview_edit,
    EDIT3D_OT_use_preview_settings,
    EDIT3D_OT_cancel_job,
    EDIT3D_OT_checkout_turn,
    EDIT3D_OT_resume_turn,
    EDIT3D_OT_discard_turn,
    EDIT3D_OT_refine,
    EDIT3D_OT_render_camera,
    EDIT3D_OT_show_image,
    EDIT3D_OT_export,
    EDIT3D_OT_download_export,
    EDIT3D_OT_clear_reports,
)
