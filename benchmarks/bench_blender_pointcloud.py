"""Benchmark: a 1M-point cloud and 1M Gaussian splats shown in Blender, and the idle poll
tick of the add-on.

    .venv/bin/python benchmarks/bench_blender_pointcloud.py [--points 1000000] [--repeat 3]
        [--splats 1000000]
    .venv/bin/python benchmarks/bench_blender_pointcloud.py --connection-file F --session S

Runs the built extension inside a real headless Blender (bpy 4.5 in .venv-blender, a
subprocess) and times, from Blender's side:

* end to end: the Export operator → `job.export` request → `export.result` with N points
  (float32 positions, uint8 colours) over the signed protocol → decoded by the add-on's
  poll step → an object with a FLOAT_COLOR point attribute, its Geometry Nodes "Mesh to
  Points" modifier and colour material, evaluated (what a viewport or render shows);
* the object-building + evaluation part alone (scene_io.point_cloud_object on the same
  arrays, then the depsgraph update);
* splats, side by side with the cloud of the same run: the Export operator of kind splats
  end to end (centres, SH colour, opacity, log-scale and rotation arrays over the protocol →
  the splat object: point attributes + Geometry Nodes ico-sphere instances, evaluated), and
  File > Import's path for a 3DGS PLY of SH degree 3 (numpy read + the same object build);
  printed as ratios to the point cloud's times (0 splats: skipped);
* the poll tick with nothing to do while connected (median, p99 and worst of 10,000, wall
  time and this thread's CPU time: on a busy machine the wall time includes preemption).

By default the peer is a protocol server in this process that answers `job.export` at once
with a pre-built cloud: the time is the transport + add-on path, without any export work.
With --connection-file/--session the peer is a real sidecar and the time includes its export
job. Targets: end to end ≤ 1 s, worst idle tick ≤ 2 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLENDER_PYTHON = ROOT / ".venv-blender" / "bin" / "python"
ADDON = "bl_ext.user_default.edit3d"


# --- inside Blender ----------------------------------------------------------------------


def blender_main(config: dict) -> dict:
    import importlib

    import bpy
    import numpy as np

    # only importable once bpy has put Blender's script modules on sys.path
    addon_utils = importlib.import_module("addon_utils")

    addon_utils.enable(ADDON, default_set=True)
    connection = sys.modules[f"{ADDON}.connection"]
    scene_io = sys.modules[f"{ADDON}.scene_io"]
    prefs = sys.modules[f"{ADDON}.preferences"].get_preferences()
    prefs.connection_file = config["connection_file"]
    prefs.request_timeout_s = 60.0
    bpy.context.preferences.system.use_online_access = True
    props = bpy.context.scene.edit3d

    def poll_until(predicate, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {limit_s} s; reports {list(props.reports)}")
            connection.poll_once(bpy.context)

    bpy.ops.edit3d.connect()
    poll_until(connection.is_ready, 30)
    props.session_id = config["session"]
    props.export_kind, props.export_points = "point_cloud", config["points"]

    ticks, cpu_ticks = [], []
    for _ in range(config["ticks"]):
        c0, t0 = time.thread_time(), time.perf_counter()
        connection.poll_once(bpy.context)
        ticks.append(time.perf_counter() - t0)
        cpu_ticks.append(time.thread_time() - c0)
        time.sleep(0.0005)  # ticks spread over seconds, so heartbeats fall inside them

    end_to_end, build = [], []
    for _ in range(config["repeat"]):
        before = len(connection.LINK.export_results)
        t0 = time.perf_counter()
        bpy.ops.edit3d.export(into_scene=True)
        poll_until(lambda b=before: len(connection.LINK.export_results) > b, 600)
        bpy.context.view_layer.update()  # evaluates the Mesh-to-Points modifier
        end_to_end.append(time.perf_counter() - t0)
        result = connection.LINK.export_results[-1]
        coll = scene_io.ensure_collection(bpy.context.scene, "bench")
        t1 = time.perf_counter()
        obj = scene_io.point_cloud_object("bench", result.points, result.colors, coll)
        bpy.context.view_layer.update()
        build.append(time.perf_counter() - t1)
        count = _evaluated_points(obj)
    splats = _time_splats(config, connection, poll_until) if config["splats"] else {}
    addon_utils.disable(ADDON, default_set=True)  # removes the timer (bpy 4.5 exit hang)
    ticks_ms = np.array(ticks) * 1000
    cpu_ms = np.array(cpu_ticks) * 1000
    return {
        **splats,
        "points": count,
        "end_to_end_s": end_to_end,
        "object_build_s": build,
        "idle_tick_ms": {
            "median": float(np.median(ticks_ms)),
            "p99": float(np.percentile(ticks_ms, 99)),
            "max": float(ticks_ms.max()),
            "cpu_max": float(cpu_ms.max()),
            "over_2ms": int((ticks_ms > 2.0).sum()),
        },
    }


def _time_splats(config: dict, connection, poll_until) -> dict:
    """Splats through the Export operator and from a 3DGS PLY, each evaluated."""
    import bpy

    splat_io = sys.modules[f"{ADDON}.splat_io"]
    scene_io = sys.modules[f"{ADDON}.scene_io"]
    bpy.context.scene.edit3d.export_kind = "splats"
    end_to_end, from_file = [], []
    for _ in range(config["repeat"]):
        before = len(connection.LINK.export_results)
        t0 = time.perf_counter()
        bpy.ops.edit3d.export(into_scene=True)
        poll_until(lambda b=before: len(connection.LINK.export_results) > b, 600)
        bpy.context.view_layer.update()  # evaluates the instancing modifier
        end_to_end.append(time.perf_counter() - t0)
        t1 = time.perf_counter()
        splats = splat_io.read_splat_ply(config["splat_ply"])
        coll = scene_io.ensure_collection(bpy.context.scene, "bench")
        obj = splat_io.splat_object("bench splats", splats, coll)
        bpy.context.view_layer.update()
        from_file.append(time.perf_counter() - t1)
    return {"splats": _evaluated_instances(obj), "splats_end_to_end_s": end_to_end,
            "splats_from_file_s": from_file}  # fmt: skip


def _evaluated_instances(obj) -> int:
    """Splat instances the evaluated object really shows."""
    import bpy

    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    geometry = evaluated.evaluated_geometry()  # owns the point cloud read below: keep it
    instances = geometry.instances_pointcloud()
    return len(instances.points) if instances is not None else 0


def _evaluated_points(obj) -> int:
    """Points the evaluated object really shows (the modifier's point cloud)."""
    import bpy

    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    if not evaluated.modifiers or evaluated.modifiers[0].type != "NODES":
        raise RuntimeError("the point cloud has no Geometry Nodes setup")
    geometry = evaluated.evaluated_geometry()
    return len(geometry.pointcloud.points) if geometry.pointcloud is not None else 0


# --- the stand-in peer -------------------------------------------------------------------


class CloudServer:
    """Answers handshake/heartbeat/job.export like the sidecar, with a pre-built cloud."""

    def __init__(self, key: bytes, points: int, splats: object | None = None) -> None:
        import numpy as np

        from protocol import ServerEndpoint

        rng = np.random.default_rng(0)
        self.points = (rng.random((points, 3), dtype=np.float32) - 0.5) * 4
        self.colors = rng.integers(0, 256, (points, 3), dtype=np.uint8)
        self.splats = splats
        """An edit3d GaussianSplats answered to job.export of kind splats."""
        self.endpoint = ServerEndpoint("tcp://127.0.0.1:0", key)
        self.stop = threading.Event()
        self.seq = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            incoming = self.endpoint.recv(timeout_ms=20)
            if incoming is not None:
                self._answer(incoming)
        self.endpoint.close()

    def _answer(self, incoming) -> None:
        from protocol import PROTOCOL_VERSION, messages

        msg, parent = incoming.message, incoming.envelope.header.msg_id
        reply = self.endpoint.reply
        if isinstance(msg, messages.Handshake):
            reply(incoming.identity, messages.HandshakeReply(
                server_version=PROTOCOL_VERSION, server_id="bench", device="cpu",
                capabilities=("job.export",)), parent_id=parent)  # fmt: skip
        elif isinstance(msg, messages.Heartbeat):
            reply(incoming.identity, messages.HeartbeatReply(server_time=time.time()),
                  parent_id=parent)  # fmt: skip
        elif isinstance(msg, messages.JobExport):
            self.seq += 1
            job_id = f"job{self.seq}"
            reply(incoming.identity, messages.JobAccepted(
                job_id=job_id, kind="job.export", queue_position=0), parent_id=parent)  # fmt: skip
            result = self._result(messages, job_id, msg.kind)
            self.endpoint.push_event([incoming.identity], result, session=msg.session_id,
                                     seq=self.seq)  # fmt: skip


    def _result(self, messages, job_id: str, kind: str):
        if kind != "splats":
            return messages.ExportResult(
                job_id=job_id, kind="point_cloud", format="ply", path="exports/bench.ply",
                points=self.points, colors=self.colors,
            )  # fmt: skip
        s = self.splats
        return messages.ExportResult(
            job_id=job_id, kind="splats", format="ply", path="exports/bench-splats.ply",
            points=s.means, sh_dc=s.sh_dc, opacity_logits=s.opacities_logit,
            log_scales=s.scales_log, rotations=s.quats_wxyz,
        )  # fmt: skip


def random_splats(count: int):
    """`count` Gaussians of SH degree 3 (the reference files' degree), seeded."""
    import numpy as np

    from edit3d.export.geometry import GaussianSplats

    rng = np.random.default_rng(1)
    return GaussianSplats(
        means=(rng.random((count, 3), dtype=np.float32) - 0.5) * 4,
        scales_log=rng.uniform(-6, -3, (count, 3)).astype(np.float32),
        quats_wxyz=rng.normal(size=(count, 4)).astype(np.float32),
        opacities_logit=rng.normal(size=count).astype(np.float32),
        sh_dc=rng.normal(size=(count, 3)).astype(np.float32),
        sh_rest=rng.normal(scale=0.1, size=(count, 15, 3)).astype(np.float32),
    )


# --- driver ------------------------------------------------------------------------------


def _install(home: Path) -> None:
    dist = home / "dist"
    build = [sys.executable, str(ROOT / "build_addon.py"), "--out-dir", str(dist)]
    subprocess.run(build, check=True, capture_output=True, text=True)
    zip_path = next(dist.glob("edit3d-*.zip"))
    script = (
        "import bpy; bpy.ops.extensions.package_install_files("
        f"filepath={str(zip_path)!r}, repo='user_default', enable_on_install=False)"
    )
    subprocess.run([str(BLENDER_PYTHON), "-c", script], check=True, env=_env(home), timeout=120)


def _env(home: Path) -> dict:
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(home / "user")}
    env.pop("PYTHONPATH", None)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=10_000, help="idle poll ticks timed")
    parser.add_argument("--splats", type=int, default=1_000_000, help="splats (0: skip)")
    parser.add_argument("--connection-file", help="a real sidecar's connection file")
    parser.add_argument("--session", help="a session of that sidecar with a trained turn")
    parser.add_argument("--inside-blender", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside_blender:
        config = json.loads(Path(args.inside_blender).read_text())
        Path(config["out"]).write_text(json.dumps(blender_main(config)))
        return 0
    sys.path.insert(0, str(ROOT))  # the repository's protocol/, not a same-named namespace
    with tempfile.TemporaryDirectory(prefix="edit3d-bench-") as tmp:
        home = Path(tmp)
        _install(home)
        server, splats = None, None
        splat_ply = str(home / "splats.ply")
        if args.splats:
            from edit3d.export.ply import write_gaussian_splat_ply

            splats = random_splats(args.splats)
            write_gaussian_splat_ply(Path(splat_ply), splats)
        if args.connection_file:
            conn_file, session, peer = args.connection_file, args.session, "real sidecar"
        else:
            from protocol import ConnectionInfo, new_key, write_connection_file

            key = new_key()
            server = CloudServer(key, args.points, splats)
            server.thread.start()
            conn_file = str(home / "connection.json")
            write_connection_file(conn_file, ConnectionInfo(server.endpoint.endpoint, key))
            session, peer = "bench", "protocol server answering at once (no export work)"
        config = {"connection_file": conn_file, "session": session, "points": args.points,
                  "repeat": args.repeat, "ticks": args.ticks, "splats": args.splats,
                  "splat_ply": splat_ply, "out": str(home / "result.json")}  # fmt: skip
        (home / "config.json").write_text(json.dumps(config))
        cmd = [str(BLENDER_PYTHON), __file__, "--inside-blender", str(home / "config.json")]
        try:
            subprocess.run(cmd, check=True, env=_env(home), timeout=900)
        finally:
            if server is not None:
                server.stop.set()
                server.thread.join(timeout=5)
        result = json.loads((home / "result.json").read_text())
    e2e, build, tick = result["end_to_end_s"], result["object_build_s"], result["idle_tick_ms"]
    print(f"peer: {peer}")
    print(f"point cloud shown in Blender (Geometry Nodes points), {result['points']} points, "
          f"end to end: best {min(e2e):.3f} s, all {[round(t, 3) for t in e2e]} "
          f"= {min(e2e) / 1.0:.2f}x the 1 s target")  # fmt: skip
    print(f"  of which building + evaluating the object: best {min(build):.3f} s")
    if args.splats:
        _print_splats(result, min(e2e), min(build))
    print(f"idle poll tick over {args.ticks} ticks: median {tick['median']:.4f} ms, "
          f"p99 {tick['p99']:.4f} ms, worst {tick['max']:.3f} ms "
          f"= {tick['max'] / 2.0:.2f}x the 2 ms target ({tick['over_2ms']} ticks over 2 ms)")
    print(f"  worst CPU time of one tick (this thread only: without other processes' "
          f"preemption) {tick['cpu_max']:.3f} ms = {tick['cpu_max'] / 2.0:.2f}x the target")
    return 0


def _print_splats(result: dict, cloud_e2e: float, cloud_build: float) -> None:
    e2e, from_file = result["splats_end_to_end_s"], result["splats_from_file_s"]
    print(f"splats shown in Blender (Geometry Nodes ico-sphere instances), {result['splats']} "
          f"instances, end to end: best {min(e2e):.3f} s "
          f"= {min(e2e) / cloud_e2e:.2f}x the point cloud's")  # fmt: skip
    print(f"  from a 3DGS PLY (SH degree 3; read + build + evaluate): best {min(from_file):.3f} s "
          f"= {min(from_file) / cloud_build:.2f}x building the point cloud")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
