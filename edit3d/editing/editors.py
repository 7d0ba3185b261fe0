"""The editor interface of a turn and how editors are chosen by name.

An editor turns the current render of one view into its edited version, conditioned on an
image (the pre-render in Edit3D mode, the dataset image in IN2N mode) and an instruction.
Editors are named by a spec string:

* ``"ip2p"``: InstructPix2Pix with the published weights (``instruct-pix2pix`` model);
* ``"ip2p-tiny"``: the same code path on tiny random networks — a pipeline check whose
  outputs are noise, never edits (``is_pipeline_check`` is True and a
  :class:`TinyEditorWarning` is emitted);
* ``"package.module:Factory"``: any importable callable returning an object with ``edit``;
  the keyword arguments of :func:`load_editor` are passed to it.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from edit3d.progress import CancelToken

IP2P_MODEL = "instruct-pix2pix"
"""Registry name of the InstructPix2Pix weights."""

TINY_RESOLUTION = 64
"""Default diffusion resolution of ``ip2p-tiny`` (keeps CPU pipeline checks fast)."""


@runtime_checkable
class Editor(Protocol):
    """Edits one view's render; see the module docstring.

    An editor may also expose ``is_pipeline_check: bool`` (read it with
    :func:`is_pipeline_check`); editors without it count as real. One whose output depends
    only on the condition image may set ``reads_render = False`` (read it with
    :func:`reads_render`): a turn then skips rendering the view for it.
    """

    def edit(
        self,
        render: np.ndarray,
        condition: np.ndarray,
        instruction: str,
        *,
        view_name: str,
        seed: int | None = None,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """Return float32 [H, W, 3] in [0, 1], the size of ``render``."""
        ...


class TinyEditorWarning(UserWarning):
    """An editor on tiny random networks was loaded: its outputs are not edits."""


def is_pipeline_check(editor: object) -> bool:
    """True when ``editor`` declares that its outputs only check the pipeline."""
    return bool(getattr(editor, "is_pipeline_check", False))


def reads_render(editor: object) -> bool:
    """False when ``editor`` declares that it edits the condition image alone, so that the
    current render it would be given is not worth rendering."""
    return bool(getattr(editor, "reads_render", True))


def load_editor(spec: str, **kwargs: Any) -> Editor:
    """Build the editor named by ``spec`` ("ip2p", "ip2p-tiny" or "package.module:Factory").

    For the InstructPix2Pix specs the keyword arguments are ``device`` (default "cpu"),
    ``local_path`` (a folder with the weights), ``model_seed`` (tiny networks' seed),
    ``config`` (an :class:`~edit3d.editing.ip2p.InstructPix2PixConfig`) and/or any of that
    config's fields (they override ``config``). For an import path they go to the factory.
    Raises ValueError naming ``spec`` when it cannot be resolved.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"editor spec must be a non-empty str, got {spec!r}")
    if spec == "ip2p":
        return _load_ip2p("real", **kwargs)
    if spec == "ip2p-tiny":
        return _load_ip2p("tiny", **kwargs)
    if ":" in spec:
        return _load_from_import_path(spec, kwargs)
    raise ValueError(
        f"editor spec {spec!r} is not 'ip2p', 'ip2p-tiny' or an import path "
        "'package.module:Factory'"
    )


def check_edit_result(result: object, render: np.ndarray, *, editor: str) -> np.ndarray:
    """Validate an editor's output against its render; returns it as float32 in [0, 1].

    Raises ValueError naming ``editor`` when the output is not [H, W, 3] of the render's
    size or holds non-finite values.
    """
    array = np.asarray(result, dtype=np.float32)
    if array.shape != render.shape:
        raise ValueError(f"editor {editor!r} returned shape {array.shape}, expected {render.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"editor {editor!r} returned non-finite values")
    return np.clip(array, 0.0, 1.0)


def _load_ip2p(
    profile: Literal["real", "tiny"],
    *,
    device: str = "cpu",
    local_path: Any = None,
    model_seed: int = 0,
    config: Any = None,
    **config_fields: Any,
) -> Editor:
    from edit3d.editing.ip2p import InstructPix2PixConfig, InstructPix2PixEditor
    from edit3d.models.registry import load_model

    if config is None:
        config = InstructPix2PixConfig(resolution=TINY_RESOLUTION if profile == "tiny" else 512)
    known = {field.name for field in dataclasses.fields(InstructPix2PixConfig)}
    unknown = sorted(set(config_fields) - known)
    if unknown:
        raise ValueError(f"unknown InstructPix2Pix settings {unknown}; known: {sorted(known)}")
    config = dataclasses.replace(config, **config_fields)
    components = load_model(
        IP2P_MODEL, profile, device=device, seed=model_seed, local_path=local_path
    )
    if profile == "tiny":
        warnings.warn(
            "ip2p-tiny runs InstructPix2Pix on tiny random networks: a pipeline check, "
            "its outputs are not edits",
            TinyEditorWarning,
            stacklevel=3,
        )
    return InstructPix2PixEditor(components, config, is_pipeline_check=profile == "tiny")


def _load_from_import_path(spec: str, kwargs: dict[str, Any]) -> Editor:
    from edit3d.import_path import resolve_import_path

    editor = resolve_import_path(spec, "editor spec")(**kwargs)
    if not callable(getattr(editor, "edit", None)):
        raise ValueError(
            f"editor spec {spec!r}: the factory returned {type(editor).__name__}, "
            "which has no edit() method"
        )
    return editor
