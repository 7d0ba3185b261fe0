"""`edit3d models list` and `edit3d models fetch NAME... | --all`."""

from __future__ import annotations

import argparse
import sys

from edit3d.models import registry


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list, fetch and locate model weights")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="registered models, their sources and local copies")
    listing.set_defaults(func=run_list)

    fetching = actions.add_parser(
        "fetch",
        help="download models (hub models into the Hugging Face cache, release files into "
        "the models directory) and verify their checksums",
    )
    fetching.add_argument("names", nargs="*", metavar="NAME", help="registered model names")
    fetching.add_argument("--all", action="store_true", help="fetch every registered model")
    fetching.add_argument("--force", action="store_true", help="download again even if cached")
    fetching.set_defaults(func=run_fetch)


def _source_columns(spec: registry.ModelSpec) -> tuple[str, str]:
    source = spec.source
    if isinstance(source, registry.HubSource):
        revision = source.revision[:12] if source.pinned else f"{source.revision} (UNPINNED)"
        return f"hub:{source.repo_id}", revision
    return source.url, f"sha256:{source.sha256[:12]}"


def _local_state(spec: registry.ModelSpec) -> tuple[str, str, str]:
    location = registry.locate(spec.name)
    return ("present" if location.present else "missing"), location.origin, str(location.path)


def run_list(_args: argparse.Namespace) -> int:
    """One row per model: source, pinned revision, present or not, and where it loads from."""
    rows = [("NAME", "SOURCE", "REVISION", "STATE", "FROM", "PATH")]
    for spec in registry.registered().values():
        rows.append((spec.name, *_source_columns(spec), *_local_state(spec)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]))
    print(
        f"\nrelease files: {registry.models_dir()} (set {registry.MODELS_DIR_ENV}); "
        f"hub models: {registry.hub_cache_dir()} (HF_HOME / HF_HUB_CACHE), or copied "
        f"folders {registry.MODELS_DIR_ENV}/<NAME>"
    )
    print(
        f"local copy of NAME: set {registry.MODEL_PATH_ENV_PREFIX}<NAME> (e.g. "
        f"{registry.model_path_env_var('sam-vit-h')})"
    )
    for module, why in registry.family_errors().items():
        print(f"note: {module} registered nothing ({why})")
    return 0


def _progress_printer(name: str) -> registry.ByteProgress:
    last = [-1]

    def report(done: int, total: int | None) -> None:
        percent = int(100 * done / total) if total else -1
        if percent != last[0] and (percent % 5 == 0 or percent < 0):
            last[0] = percent
            shown = f"{percent}%" if total else f"{done >> 20} MiB"
            print(f"\r{name}: {shown}", end="", file=sys.stderr, flush=True)

    return report


def run_fetch(args: argparse.Namespace) -> int:
    names = list(registry.registered()) if args.all else list(args.names)
    if not names:
        print("edit3d models fetch: name at least one model, or --all", file=sys.stderr)
        return 2
    failures = 0
    for name in names:
        try:
            path = registry.fetch(name, force=args.force, on_progress=_progress_printer(name))
        except (ValueError, registry.FetchError) as error:
            failures += 1
            print(f"\n{name}: FAILED: {error}", file=sys.stderr)
            continue
        print(f"\n{name}: verified at {path}")
    return 1 if failures else 0
