"""InstructPix2Pix editor: the real code path driven by tiny offline components."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edit3d.editing.ip2p import (
    InstructPix2PixConfig,
    InstructPix2PixEditor,
    diffusion_size,
    guided_noise,
)
from edit3d.models.ip2p import IP2PComponents, build_tiny, build_tiny_tokenizer, load_real
from edit3d.progress import Cancelled, CancelToken

INSTRUCTION = "turn him into a clown"
FAST = InstructPix2PixConfig(resolution=32, diffusion_steps=4)


@pytest.fixture(scope="module")
def tiny() -> IP2PComponents:
    return build_tiny(seed=0, device="cpu")


def _image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)


class RecordingUNet:
    """Wraps a UNet (or an epsilon function) and records every call."""

    def __init__(self, forward) -> None:
        self.forward = forward
        self.calls: list[dict[str, torch.Tensor]] = []

    def __call__(self, sample, timestep, *, encoder_hidden_states):
        self.calls.append({"sample": sample.clone(), "timestep": torch.as_tensor(timestep).clone()})
        output = self.forward(sample, timestep, encoder_hidden_states=encoder_hidden_states)
        return SimpleNamespace(sample=getattr(output, "sample", output))


def _zero_eps(sample, timestep, *, encoder_hidden_states):
    return torch.zeros_like(sample[:, :4])


def _with(tiny: IP2PComponents, **replacements) -> IP2PComponents:
    return dataclasses.replace(tiny, **replacements)


def test_output_has_input_size_and_unit_range(tiny: IP2PComponents) -> None:
    render = _image(37, 53, seed=1)  # non-square, sides not multiples of 8
    editor = InstructPix2PixEditor(tiny, FAST)
    edited = editor.edit(render, render, INSTRUCTION, view_name="frame_001.png", seed=3)
    assert edited.shape == (37, 53, 3)
    assert edited.dtype == np.float32
    assert edited.min() >= 0.0 and edited.max() <= 1.0
    assert edited.std() > 1e-3  # decoded pixels, not a constant fill


def test_same_seed_same_output_different_seed_different_output(tiny: IP2PComponents) -> None:
    render, condition = _image(24, 40, seed=1), _image(24, 40, seed=2)
    editor = InstructPix2PixEditor(tiny, FAST)
    first = editor.edit(render, condition, INSTRUCTION, view_name="a.png", seed=7)
    again = editor.edit(render, condition, INSTRUCTION, view_name="a.png", seed=7)
    other = editor.edit(render, condition, INSTRUCTION, view_name="a.png", seed=8)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1e-3


def test_unseeded_edits_are_reproducible_from_the_config_seed(tiny: IP2PComponents) -> None:
    render = _image(16, 16, seed=4)
    config = dataclasses.replace(FAST, diffusion_steps=2, seed=11)
    run_a = InstructPix2PixEditor(tiny, config)
    run_b = InstructPix2PixEditor(tiny, config)
    a1, a2 = (run_a.edit(render, render, INSTRUCTION, view_name="v.png") for _ in range(2))
    b1, b2 = (run_b.edit(render, render, INSTRUCTION, view_name="v.png") for _ in range(2))
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert np.abs(a1 - a2).mean() > 1e-4  # successive edits draw fresh noise


@pytest.mark.parametrize("cancel_after", [0, 1, 3])
def test_cancel_stops_between_denoising_steps(tiny: IP2PComponents, cancel_after: int) -> None:
    unet = RecordingUNet(tiny.unet)
    config = dataclasses.replace(FAST, diffusion_steps=6)
    editor = InstructPix2PixEditor(_with(tiny, unet=unet), config)
    cancel = CancelToken(predicate=lambda: len(unet.calls) >= cancel_after)
    render = _image(16, 16, seed=5)
    with pytest.raises(Cancelled):
        editor.edit(render, render, INSTRUCTION, view_name="v.png", seed=0, cancel=cancel)
    # One batched UNet call per step: exactly `cancel_after` steps ran, no more.
    assert len(unet.calls) == cancel_after


def test_guidance_combines_three_predictions_as_in_ip2p(tiny: IP2PComponents) -> None:
    """A UNet stand-in returns a known epsilon per conditioning; the result is hand-computed."""
    steps, text_scale, image_scale = 3, 7.5, 1.5
    render, condition = _image(32, 32, seed=6), _image(32, 32, seed=7)
    prompt_states = _text_states(tiny, INSTRUCTION)
    empty_states = _text_states(tiny, "")
    with torch.no_grad():
        condition_latents = tiny.vae.encode(_pixels(condition)).latent_dist.mode()
    shape = condition_latents.shape
    generator = torch.Generator().manual_seed(0)
    eps_text, eps_image, eps_uncond = (torch.randn(shape, generator=generator) for _ in range(3))

    def known_eps(sample, timestep, *, encoder_hidden_states):
        outputs = []
        for states, image in zip(encoder_hidden_states, sample[:, 4:], strict=True):
            has_text = _same(states, prompt_states, empty_states)
            has_image = _same(image[None], condition_latents, torch.zeros(shape))
            if has_text and not has_image:
                raise AssertionError("text without image is not one of IP2P's three passes")
            outputs.append(eps_text if has_text else eps_image if has_image else eps_uncond)
        return torch.cat(outputs)

    unet = RecordingUNet(known_eps)
    decoded: list[torch.Tensor] = []
    vae = _DecodeSpy(tiny.vae, decoded)
    config = InstructPix2PixConfig(resolution=None, diffusion_steps=steps, seed=0)
    editor = InstructPix2PixEditor(_with(tiny, unet=unet, vae=vae), config)
    editor.edit(render, condition, INSTRUCTION, view_name="v.png", seed=2)

    assert len(unet.calls) == steps
    for call in unet.calls:  # the three passes share the same noisy latents
        latents = call["sample"][:, :4]
        torch.testing.assert_close(latents[1], latents[0])
        torch.testing.assert_close(latents[2], latents[0])
    guided = (
        eps_uncond + text_scale * (eps_text - eps_image) + image_scale * (eps_image - eps_uncond)
    )
    expected = _hand_ddim(unet.calls, guided, tiny.scheduler.alphas_cumprod)
    torch.testing.assert_close(decoded[0] * tiny.vae.config.scaling_factor, expected)


def test_guided_noise_formula() -> None:
    text, image, uncond = torch.tensor([3.0]), torch.tensor([2.0]), torch.tensor([1.0])
    # 1 + 7.5·(3 − 2) + 1.5·(2 − 1) = 10
    assert guided_noise(text, image, uncond, 7.5, 1.5).item() == pytest.approx(10.0)


def test_fixed_noise_level_gives_the_compressed_schedule(tiny: IP2PComponents) -> None:
    unet = RecordingUNet(_zero_eps)
    config = dataclasses.replace(FAST, diffusion_steps=20, lower_bound=0.5, upper_bound=0.5)
    editor = InstructPix2PixEditor(_with(tiny, unet=unet), config)
    render = _image(16, 16, seed=8)
    editor.edit(render, render, INSTRUCTION, view_name="v.png", seed=0)
    used = [int(call["timestep"]) for call in unet.calls]
    # T = 500 → 20 steps of 500 // 20 = 25, shifted by the scheduler's steps_offset (1).
    assert used == [25 * k + 1 for k in range(19, -1, -1)]


def test_noise_levels_stay_in_window_and_vary_with_seed(tiny: IP2PComponents) -> None:
    unet = RecordingUNet(_zero_eps)
    config = dataclasses.replace(FAST, resolution=8, diffusion_steps=2)
    editor = InstructPix2PixEditor(_with(tiny, unet=unet), config)
    render = _image(8, 8, seed=9)
    first_steps = []
    for seed in range(40):
        unet.calls.clear()
        editor.edit(render, render, INSTRUCTION, view_name="v.png", seed=seed)
        first, last = (int(call["timestep"]) for call in unet.calls)
        assert last == 1
        first_steps.append(first - 1)  # = T // 2
    levels = 2 * np.array(first_steps)  # T rounded down to even
    assert levels.min() >= 20 - 1 and levels.max() <= 980
    assert len(set(first_steps)) > 30  # uniform over ~960 levels: seeds do not collide


def test_text_embeddings_are_cached_per_instruction(tiny: IP2PComponents) -> None:
    encoded: list[int] = []

    def counting_encoder(input_ids):
        encoded.append(input_ids.shape[0])
        return tiny.text_encoder(input_ids)

    editor = InstructPix2PixEditor(_with(tiny, text_encoder=counting_encoder), FAST)
    render = _image(16, 16, seed=10)
    for _ in range(3):
        editor.edit(render, render, INSTRUCTION, view_name="v.png", seed=0)
    assert len(encoded) == 2  # the instruction and the empty prompt, once
    editor.edit(render, render, "make it snowy", view_name="v.png", seed=0)
    assert len(encoded) == 4


def test_tiny_tokenizer_gives_distinct_nontrivial_ids() -> None:
    tokenizer = build_tiny_tokenizer()
    ids = tokenizer(INSTRUCTION).input_ids
    other = tokenizer("make it snowy").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) == len(INSTRUCTION.replace(" ", "")) + 2  # one token per byte
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert ids != other
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == INSTRUCTION


def test_real_loader_reads_a_diffusers_folder_offline(tiny: IP2PComponents, tmp_path: Path) -> None:
    """load_real on a saved bundle (same layout as the hub snapshot) edits identically."""
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        getattr(tiny, name).save_pretrained(tmp_path / name)
    loaded = load_real(tmp_path, "cpu")
    render = _image(16, 24, seed=12)
    expected = InstructPix2PixEditor(tiny, FAST).edit(
        render, render, INSTRUCTION, view_name="v", seed=1
    )
    actual = InstructPix2PixEditor(loaded, FAST).edit(
        render, render, INSTRUCTION, view_name="v", seed=1
    )
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    assert type(loaded.scheduler).__name__ == "DDIMScheduler"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("guidance_scale", -1.0),
        ("image_guidance_scale", -0.5),
        ("diffusion_steps", 0),
        ("lower_bound", 0.99),
        ("upper_bound", 1.5),
        ("resolution", 4),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        InstructPix2PixConfig(**{field: value})


def test_edit_rejects_images_that_are_not_rgb(tiny: IP2PComponents) -> None:
    editor = InstructPix2PixEditor(tiny, FAST)
    with pytest.raises(ValueError, match="condition"):
        editor.edit(_image(8, 8, 0), np.zeros((8, 8)), INSTRUCTION, view_name="v")
    with pytest.raises(ValueError, match="render holds non-finite"):
        editor.edit(np.full((8, 8, 3), np.nan), _image(8, 8, 0), INSTRUCTION, view_name="v")


def test_overshooting_renders_are_clipped_before_encoding(tiny: IP2PComponents) -> None:
    editor = InstructPix2PixEditor(tiny, FAST)
    render = _image(16, 16, seed=13)
    overshoot = render * 1.4 - 0.2  # same pixels where inside [0, 1], beyond it elsewhere
    clipped = np.clip(overshoot, 0.0, 1.0)
    a = editor.edit(overshoot, render, INSTRUCTION, view_name="v", seed=0)
    b = editor.edit(clipped, render, INSTRUCTION, view_name="v", seed=0)
    np.testing.assert_array_equal(a, b)


def test_diffusion_size_keeps_aspect_on_multiples_of_eight() -> None:
    assert diffusion_size(37, 53, 32) == (24, 32)
    assert diffusion_size(369, 497, 512) == (384, 512)
    assert diffusion_size(37, 53, None) == (40, 56)


# -- helpers ---------------------------------------------------------------------------


class _DecodeSpy:
    """A VAE proxy that records the latents handed to decode()."""

    def __init__(self, vae, decoded: list[torch.Tensor]) -> None:
        self._vae = vae
        self._decoded = decoded

    def __getattr__(self, name: str):
        return getattr(self._vae, name)

    def decode(self, latents: torch.Tensor):
        self._decoded.append(latents.clone())
        return self._vae.decode(latents)


def _pixels(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None] * 2.0 - 1.0


def _text_states(tiny: IP2PComponents, prompt: str) -> torch.Tensor:
    tokenizer = tiny.tokenizer
    ids = tokenizer(
        prompt, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return tiny.text_encoder(ids).last_hidden_state[0]


def _same(value: torch.Tensor, when_true: torch.Tensor, when_false: torch.Tensor) -> bool:
    """Which of two known tensors ``value`` is; anything else fails the test."""
    if torch.allclose(value, when_true, atol=1e-5):
        return True
    if torch.allclose(value, when_false, atol=1e-5):
        return False
    raise AssertionError("the UNet got a conditioning that is neither expected input")


def _hand_ddim(calls: list[dict], eps: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from the first recorded noisy latents over the recorded steps."""
    timesteps = [int(call["timestep"]) for call in calls]
    stride = timesteps[0] - timesteps[1]
    latents = calls[0]["sample"][:1, :4]
    for timestep in timesteps:
        alpha = alphas_cumprod[timestep]
        previous = timestep - stride
        # set_alpha_to_one=False: the step below 0 uses alpha at timestep 0
        alpha_prev = alphas_cumprod[max(previous, 0)]
        predicted_x0 = (latents - (1 - alpha).sqrt() * eps) / alpha.sqrt()
        latents = alpha_prev.sqrt() * predicted_x0 + (1 - alpha_prev).sqrt() * eps
    return latents


def test_tiny_bundle_weights_follow_the_seed() -> None:
    first, again, other = (build_tiny(seed=s, device="cpu") for s in (5, 5, 6))

    def weights(bundle: IP2PComponents) -> torch.Tensor:
        return bundle.unet.conv_in.weight

    torch.testing.assert_close(weights(first), weights(again))
    assert not torch.allclose(weights(first), weights(other))
    assert first.unet.config.in_channels == 8
    assert first.unet.config.cross_attention_dim == first.text_encoder.config.hidden_size


def test_compressed_schedule_equals_in2n_overwriting_num_train_timesteps() -> None:
    """IN2N sets the scheduler's num_train_timesteps to T in place; the copy must match it."""
    from edit3d.editing.ip2p import compressed_schedule
    from edit3d.models.ip2p import sd_ddim_scheduler

    base = sd_ddim_scheduler()
    ours = compressed_schedule(base, 437, 20)
    in2n = sd_ddim_scheduler()
    in2n.register_to_config(num_train_timesteps=437)
    in2n.set_timesteps(20)
    torch.testing.assert_close(ours.timesteps, in2n.timesteps)
    torch.testing.assert_close(ours.alphas_cumprod, base.alphas_cumprod)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    for timestep in in2n.timesteps:
        eps = torch.randn(1, 4, 8, 8, generator=generator)
        expected = in2n.step(eps, timestep, latents).prev_sample
        torch.testing.assert_close(ours.step(eps, timestep, latents).prev_sample, expected)
        latents = expected
    assert base.config.num_train_timesteps == 1000  # the shared scheduler is untouched


class SlowUNet:
    """A tiny UNet that takes `seconds` per call (a long edit on a small machine)."""

    def __init__(self, unet, seconds: float) -> None:
        self.unet, self.seconds, self.calls = unet, seconds, 0

    def __call__(self, sample, timestep, *, encoder_hidden_states):
        import time

        time.sleep(self.seconds)
        self.calls += 1
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states)


def test_step_callback_reports_every_step_and_a_cancel_from_another_thread_stops_within_one(
    tiny: IP2PComponents,
) -> None:
    import threading
    import time

    step_s = 0.4
    unet = SlowUNet(tiny.unet, step_s)
    editor = InstructPix2PixEditor(
        _with(tiny, unet=unet), dataclasses.replace(FAST, diffusion_steps=50)
    )
    cancel = CancelToken()
    reported: list[tuple[int, int, float]] = []

    def on_step(done: int, total: int) -> None:
        reported.append((done, total, time.monotonic()))
        if done == 2:  # the user presses Cancel while step 3 is running
            threading.Timer(step_s / 2, cancel.cancel).start()

    render = _image(16, 16, seed=5)
    with pytest.raises(Cancelled):
        editor.edit(render, render, INSTRUCTION, view_name="v.png", seed=0, cancel=cancel,
                    on_step=on_step)  # fmt: skip
    assert [(d, t) for d, t, _ in reported] == [(1, 50), (2, 50), (3, 50)]
    assert unet.calls == 3  # the running step finished, none of the other 47 started


def test_with_settings_shares_the_networks_and_uses_the_new_settings(tiny: IP2PComponents) -> None:
    from edit3d.editing.settings import EditorSettings

    unet = RecordingUNet(tiny.unet)
    editor = InstructPix2PixEditor(_with(tiny, unet=unet), FAST)
    configured = editor.with_settings(EditorSettings(diffusion_steps=2, guidance_scale=3.0))
    assert configured.components is editor.components
    assert configured.config.resolution == FAST.resolution  # None keeps the editor's own
    assert configured.config.guidance_scale == 3.0 and editor.config.guidance_scale == 7.5
    render = _image(16, 16, seed=5)
    configured.edit(render, render, INSTRUCTION, view_name="v.png", seed=0)
    assert len(unet.calls) == 2
    resized = editor.with_settings(EditorSettings(resolution=16))
    assert resized.config.resolution == 16
