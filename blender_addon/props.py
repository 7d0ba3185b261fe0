"""The add-on's properties: what the user sets, on the Scene (`scene.edit3d`, saved with
the .blend), and runtime state, on the window manager (`window_manager.edit3d`, never saved).

Everything the panel shows lives here, so the poll step only writes properties and the panel
only reads them.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

CONNECTION_STATES = (
    ("DISCONNECTED", "Disconnected", "Not connected to a sidecar"),
    ("CONNECTING", "Connecting", "Handshake sent, waiting for the sidecar"),
    ("CONNECTED", "Connected", "The sidecar answered the handshake"),
    ("LOST", "Lost", "The sidecar stopped answering; retrying"),
)

JOB_STATES = (
    ("NONE", "None", "No job"),
    ("SUBMITTED", "Submitted", "Request sent, no answer yet"),
    ("QUEUED", "Queued", "Waiting behind other jobs"),
    ("RUNNING", "Running", "Running on the sidecar"),
    ("FINISHED", "Finished", "Finished"),
    ("FAILED", "Failed", "Failed on the sidecar"),
    ("CANCELLED", "Cancelled", "Cancelled"),
)

PRESETS = (
    ("small", "Small", "Reduced nerfacto for quick iterations"),
    ("paper", "Paper", "The paper's nerfacto settings (30k iterations)"),
    ("tiny", "Tiny", "Pipeline check only (CPU tests); never a real result"),
)
DEFAULT_BACKEND_ITEM = "DEFAULT"
"""The Backend choice that sends none: the sidecar's edit3d decides."""
DEFAULT_UPDATE_ITEM = "DEFAULT"
"""The Dataset update choice that sends none: the method's default schedule."""
BACKENDS = (
    (DEFAULT_BACKEND_ITEM, "Default", "The backend the sidecar's edit3d uses by default"),
    ("nerfacto", "NeRF (nerfacto)", "A neural radiance field, as in the paper"),
    ("splatfacto", "Gaussian splats (splatfacto)",
     "3D Gaussian Splatting (needs a sidecar whose edit3d has this backend)"),
)  # fmt: skip


class EDIT3D_PG_turn(bpy.types.PropertyGroup):
    """One entry of the session's turn history."""

    turn_id: StringProperty(name="Turn")
    parent: StringProperty(name="Parent")
    kind: StringProperty(name="Kind", description="base, edit or refine")
    status: StringProperty(name="Status")
    instruction: StringProperty(name="Instruction")
    edit_queries: StringProperty(
        name="Edit region", description="The turn's queries, joined by '; ' for display"
    )
    keep_queries: StringProperty(
        name="Keep region", description="The turn's queries, joined by '; ' for display"
    )
    caption: StringProperty(name="Caption")


class EDIT3D_PG_editor(bpy.types.PropertyGroup):
    """InstructPix2Pix settings of the next turn and its previews. Only a field whose
    override is on is sent; the others keep the method's defaults, which the sidecar owns.
    A value is where the field starts when the user turns its override on: the sidecar's
    default once connected (its handshake's `editor_defaults`); the declared defaults below
    only stand in until then."""

    use_guidance_scale: BoolProperty(name="Text guidance", description="Override text guidance")
    guidance_scale: FloatProperty(
        name="Text guidance", default=7.5, min=0.0, max=100.0,
        description="How strongly the edit follows the instruction",
    )  # fmt: skip
    use_image_guidance_scale: BoolProperty(
        name="Image guidance", description="Override image guidance"
    )
    image_guidance_scale: FloatProperty(
        name="Image guidance", default=1.5, min=0.0, max=100.0,
        description="How strongly the edit keeps the rendered view",
    )  # fmt: skip
    use_diffusion_steps: BoolProperty(
        name="Diffusion steps", description="Override the denoising steps"
    )
    diffusion_steps: IntProperty(
        name="Diffusion steps", default=20, min=1, max=1000, description="DDIM steps per edit"
    )
    use_noise_range: BoolProperty(name="Noise range", description="Override the noise range")
    lower_bound: FloatProperty(
        name="Lowest noise", default=0.02, min=0.0, max=1.0,
        description="Smallest noise level, as a fraction of the diffusion timesteps",
    )  # fmt: skip
    upper_bound: FloatProperty(
        name="Highest noise", default=0.98, min=0.0, max=1.0,
        description="Largest noise level, as a fraction of the diffusion timesteps",
    )  # fmt: skip
    use_resolution: BoolProperty(name="Resolution", description="Override the resolution")
    resolution: IntProperty(
        name="Resolution", default=512, min=8, max=4096,
        description="Long side in pixels the diffusion runs at",
    )  # fmt: skip


class EDIT3D_PG_seed(bpy.types.PropertyGroup):
    """One seed of the last edit preview."""

    seed: IntProperty(name="Seed", min=0)


class EDIT3D_PG_session(bpy.types.PropertyGroup):
    """One session on the sidecar (from the handshake or a session list)."""

    session_id: StringProperty(name="Session")
    label: StringProperty(name="Name")
    turn_count: IntProperty(name="Turns")
    busy: BoolProperty(name="Busy")


class EDIT3D_PG_job(bpy.types.PropertyGroup):
    """One job of the open session, whoever started it (the job list)."""

    job_id: StringProperty(name="Job")
    kind: StringProperty(name="Kind", description="Request type, e.g. job.run_turn")
    session_id: StringProperty(name="Session")
    state: StringProperty(name="State", description="queued, running, finished, ...")
    queue_position: IntProperty(name="Queue position")
    progress: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0)
    step: IntProperty(name="Step")
    total: IntProperty(name="Total")
    phase: StringProperty(name="Phase", description="Running phase, e.g. prerender, masks, turn")
    eta_s: FloatProperty(name="ETA", unit="TIME_ABSOLUTE", default=-1.0)
    message: StringProperty(name="Message")


class EDIT3D_PG_report(bpy.types.PropertyGroup):
    """A message from the sidecar kept for the panel (errors arrive between operators)."""

    level: StringProperty(name="Level")
    message: StringProperty(name="Message")


class EDIT3D_PG_scene(bpy.types.PropertyGroup):
    """Connection, session, job, turn and export state of the Edit3D add-on."""

    # session and scene
    session_id: StringProperty(name="Session", description="The open session on the sidecar")
    session_name: StringProperty(
        name="Name", default="scene", description="Name of the next session to create"
    )
    source: EnumProperty(
        name="Source",
        items=(
            ("DATASET", "Dataset on sidecar", "A nerfstudio dataset path on the sidecar machine"),
            ("UPLOAD", "Upload dataset", "A dataset folder on this machine, sent to the sidecar"),
            ("NERFSTUDIO_RUN", "Nerfstudio run", "An existing nerfstudio run (config.yml)"),
        ),
    )
    dataset_path: StringProperty(name="Dataset", description="Path on the sidecar machine")
    upload_dir: StringProperty(name="Local dataset", subtype="DIR_PATH")
    uploaded_dataset: StringProperty(
        name="Uploaded dataset", description="Folder in the session's uploads to train on"
    )
    nerfstudio_run: StringProperty(name="Run config", description="config.yml on the sidecar")
    preset: EnumProperty(name="Preset", items=PRESETS)
    backend: EnumProperty(
        name="Backend",
        items=BACKENDS,
        description="Field backend of the next session (a nerfstudio run's model decides its own)",
    )
    base_steps: IntProperty(
        name="Base steps", default=0, min=0, description="Iterations (0: the preset's)"
    )
    camera_collection: StringProperty(name="Cameras", default="Edit3D Cameras")

    event_seq: IntProperty(
        name="Last event sequence", default=-1,
        description="Last event of the open session applied (resync from here on reopening)",
    )  # fmt: skip

    # turns
    turns: CollectionProperty(type=EDIT3D_PG_turn)
    active_turn_index: IntProperty(name="Active turn")
    head: StringProperty(name="Head turn")
    instruction: StringProperty(name="Instruction", description="What to change")
    edit_queries: StringProperty(
        name="Edit region", description="Comma-separated words naming what to edit (empty: all)"
    )
    keep_queries: StringProperty(
        name="Keep region", description="Comma-separated words naming what must not change"
    )
    auto_caption: BoolProperty(
        name="Auto caption", default=True, description="Let the sidecar caption the view"
    )
    caption: StringProperty(name="Caption", description="Scene caption used by segmentation")
    mode: EnumProperty(
        name="Mode",
        items=(
            ("edit3d", "Edit3D", "Multi-turn: condition on the previous turn's renders"),
            ("in2n", "IN2N", "Baseline: condition on the original dataset images"),
        ),
    )
    update: EnumProperty(
        name="Dataset update",
        items=(
            (DEFAULT_UPDATE_ITEM, "Default", "The method's default schedule"),
            ("per_view", "Per view", "Re-edit a few views, round-robin, every few iterations"),
            ("rounds", "Rounds", "Re-edit every view at once every few iterations"),
        ),
        description="When the turn's edited images are renewed while the field trains",
    )
    turn_steps: IntProperty(
        name="Steps", default=0, min=0, description="Iterations of a turn (0: the preset's)"
    )
    seed: IntProperty(name="Seed", default=0, min=0)
    editor: PointerProperty(type=EDIT3D_PG_editor)
    show_editor: BoolProperty(name="Editor", description="Show the editor's settings")
    preview_seeds: IntProperty(
        name="Seeds", default=1, min=1, max=8,
        description="Preview Edit tries this many seeds: Seed, Seed + 1, ...",
    )  # fmt: skip
    edit_preview_image: PointerProperty(
        name="Edit preview", type=bpy.types.Image,
        description="The last Preview Edit: before | mask overlay | after per seed",
    )  # fmt: skip

    # previews
    preview_image: PointerProperty(name="Render", type=bpy.types.Image)
    before_image: PointerProperty(
        name="Before", type=bpy.types.Image, description="The head's parent turn, same camera"
    )
    render_before: BoolProperty(
        name="Before/after", default=True,
        description="Also render the head's parent turn, to compare what the last edit changed",
    )  # fmt: skip
    mask_image: PointerProperty(name="Mask", type=bpy.types.Image)
    heatmap_image: PointerProperty(name="Heatmap", type=bpy.types.Image)
    live_preview: BoolProperty(
        name="Live preview", description="Render the active camera while training"
    )
    live_interval_s: FloatProperty(name="Interval", default=5.0, min=0.5, unit="TIME_ABSOLUTE")

    # export
    export_kind: EnumProperty(
        name="Export",
        items=(
            ("point_cloud", "Point cloud", "Coloured points on the scene's surfaces"),
            ("mesh", "Mesh", "Coloured triangle mesh"),
            ("splats", "Gaussian splats", "The Gaussians of a splatting backend (3DGS PLY)"),
            ("nerfstudio_run", "nerfstudio run",
             "An ns-train output folder on the sidecar that ns-viewer, ns-render and ns-export "
             "open (saved on the sidecar, beside the session's dataset)"),
        ),
    )  # fmt: skip
    export_format: EnumProperty(
        name="Format", items=(("ply", "PLY", ""), ("obj", "OBJ", ""), ("glb", "glTF binary", ""))
    )
    export_points: IntProperty(name="Points", default=200000, min=1)
    export_views: IntProperty(
        name="Views", default=0, min=0,
        description="Dataset views a point cloud or mesh is rendered from, spread evenly "
        "(0: every view; fewer is faster on a large capture)",
    )  # fmt: skip
    export_save_path: StringProperty(
        name="Save to", subtype="DIR_PATH",
        description="Local folder that Download saves exported files into",
    )  # fmt: skip


class EDIT3D_PG_status(bpy.types.PropertyGroup):
    """Runtime state on the window manager (never saved into a .blend file): the link,
    the jobs and the sidecar's messages."""

    # connection
    connection_state: EnumProperty(name="Connection", items=CONNECTION_STATES)
    connection_message: StringProperty(name="Connection message")
    server_version: StringProperty(name="Sidecar version")
    device: StringProperty(name="Device")
    gpu_memory_total_gb: FloatProperty(name="GPU memory", precision=1)
    gpu_memory_free_gb: FloatProperty(name="GPU memory free", precision=1)
    capabilities: StringProperty(name="Capabilities")
    weights_missing: StringProperty(
        name="Missing weights",
        description="Registered models whose real weights the sidecar lacks (comma-separated)",
    )
    sessions: CollectionProperty(type=EDIT3D_PG_session)
    active_session_index: IntProperty(name="Sidecar session")
    session_label: StringProperty(name="Open session", description="Name of the open session")
    session_backend: StringProperty(
        name="Backend", description="Field backend of the open session (empty: the default)"
    )

    # the panel's current job
    job_id: StringProperty(name="Job")
    job_kind: StringProperty(name="Job kind")
    job_state: EnumProperty(name="Job state", items=JOB_STATES)
    queue_position: IntProperty(name="Queue position")
    progress: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0)
    step: IntProperty(name="Step")
    total: IntProperty(name="Total")
    phase: StringProperty(name="Phase", description="Running phase, e.g. prerender, masks, turn")
    loss: FloatProperty(name="Loss", precision=4)
    eta_s: FloatProperty(name="ETA", unit="TIME_ABSOLUTE", default=-1.0)
    job_message: StringProperty(name="Job message")

    jobs: CollectionProperty(type=EDIT3D_PG_job)
    """Every job of the open session (and this Blender's), newest last."""

    mask_caption: StringProperty(name="Mask caption")
    preview_seeds: CollectionProperty(type=EDIT3D_PG_seed)
    """Seeds of the last edit preview, in the order of its images."""
    preview_choice: IntProperty(
        name="Use seed", default=1, min=1, max=8,
        description="Which of the preview's edits (1 = left) Use These Settings takes",
    )  # fmt: skip
    preview_editor: PointerProperty(type=EDIT3D_PG_editor)
    """The Editor box as the last edit preview sent it."""
    reports: CollectionProperty(type=EDIT3D_PG_report)

    def reset(self) -> None:
        """Nothing connected, no job: the truth right after (re)registering the add-on."""
        self.connection_state, self.connection_message = "DISCONNECTED", ""
        self.capabilities, self.weights_missing = "", ""
        self.job_state, self.job_id, self.job_message = "NONE", "", ""
        self.progress, self.step, self.total, self.loss, self.eta_s = 0.0, 0, 0, 0.0, -1.0
        self.phase = ""
        self.preview_seeds.clear()
        self.sessions.clear()
        self.jobs.clear()


classes = (EDIT3D_PG_turn, EDIT3D_PG_editor, EDIT3D_PG_seed, EDIT3D_PG_session, EDIT3D_PG_job,
           EDIT3D_PG_report, EDIT3D_PG_scene, EDIT3D_PG_status)  # fmt: skip


def register_properties() -> None:
    bpy.types.Scene.edit3d = PointerProperty(type=EDIT3D_PG_scene)
    bpy.types.WindowManager.edit3d = PointerProperty(type=EDIT3D_PG_status)


def unregister_properties() -> None:
    del bpy.types.WindowManager.edit3d
    del bpy.types.Scene.edit3d
