"""PerSAM's decoding against stock SAM and against plain transcriptions of the paper's formulas.

The transcriptions below follow the formulas stated in the foundation issue (and the behaviour of
the official Personalize-SAM code), written with plain tensors and the model's own weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything import SamPredictor

from persam_video import PerSAM, PerSAMConfig
from persam_video.model.hq import is_hq_decoder
from persam_video.model.spec import SamSpec, build_sam_from_spec, tiny_sam_spec
from persam_video.persam.cascade import ExtraPrompt, decode
from persam_video.persam.encoder import FrameEncoder
from persam_video.persam.geometry import upsample_logits
from persam_video.persam.guided_decoder import guided_attention, hq_features, predict_masks
from persam_video.persam.prior import reference_cells, similarity_grid
from tests.helpers import ellipse_mask, encode_image, random_image, tiny_hq_sam

TOL = 1e-5

SPECS = {
    "tiny128": tiny_sam_spec(),
    "small256": tiny_sam_spec(image_size=256, encoder_dim=48, encoder_depth=2, decoder_dim=64),
    "wide_decoder": SamSpec(
        image_size=192,
        encoder_dim=32,
        encoder_depth=2,
        encoder_heads=2,
        encoder_global_attn=(1,),
        window_size=6,
        decoder_dim=96,
        decoder_heads=4,
        decoder_mlp_dim=128,
        iou_head_hidden_dim=64,
        mask_in_chans=8,
    ),
}
SIZES = [(90, 150), (150, 90), (77, 77), (101, 63)]


@pytest.fixture(scope="module", params=list(SPECS))
def sam(request):
    return build_sam_from_spec(SPECS[request.param], seed=7)


@pytest.fixture(scope="module")
def mobile_sam():
    """MobileSAM (TinyViT from segment-anything-hq, SAM's own decoder) at its real size."""
    pytest.importorskip("segment_anything_hq", reason="segment-anything-hq (the hq extra)")
    from persam_video.model.mobile import build_mobile_sam

    return build_mobile_sam(seed=7)


@pytest.fixture(scope="module")
def hq_sam():
    """A small HQ-SAM (segment-anything-hq's classes: ViT encoder, MaskDecoderHQ)."""
    pytest.importorskip("segment_anything_hq", reason="segment-anything-hq (the hq extra)")
    return tiny_hq_sam(seed=7)


# --------------------------------------------------------------------------- transcriptions
def plain_attention(attn, q, k, v, bias=None):
    """Attention of SAM's decoder as plain tensors; with ``bias``: softmax(softmax(.) + A)."""
    q, k, v = attn.q_proj(q), attn.k_proj(k), attn.v_proj(v)
    b, n, c = q.shape
    heads = attn.num_heads

    def split(x):
        return x.reshape(x.shape[0], x.shape[1], heads, c // heads).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    weights = torch.softmax(q @ k.permute(0, 1, 3, 2) / math.sqrt(c // heads), dim=-1)
    if bias is not None:
        weights = torch.softmax(weights + bias, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    return attn.out_proj(out)


def plain_block(block, queries, keys, query_pe, key_pe, bias):
    if block.skip_first_layer_pe:
        queries = block.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + block.self_attn(q=q, k=q, v=queries)
    queries = block.norm1(queries)
    q, k = queries + query_pe, keys + key_pe
    queries = block.norm2(
        queries + plain_attention(block.cross_attn_token_to_image, q, k, keys, bias)
    )
    queries = block.norm3(queries + block.mlp(queries))
    q, k = queries + query_pe, keys + key_pe
    keys = block.norm4(keys + block.cross_attn_image_to_token(q=k, k=q, v=queries))
    return queries, keys


def plain_guided_decoder(
    decoder, image_embedding, image_pe, sparse, dense, bias, target, interm=None
):
    """The guided two-way transformer and mask heads; returns logits, IoUs and per-layer states.

    Semantic prompting as stated: P' = P + t is the query positional embedding of every layer,
    t is added to the queries before each layer, and queries + P' + t is the final query.
    HQ-SAM (``interm``: its early-layer encoder features): its high-quality token joins the
    output tokens, and its mask, read from the fused high-resolution features, is added to every
    SAM output (what its predictor returns with ``hq_token_only=False``).
    """
    hq = interm is not None
    own = [decoder.iou_token.weight, decoder.mask_tokens.weight]
    tokens = torch.cat([*own, decoder.hf_token.weight] if hq else own, dim=0)
    tokens = torch.cat([tokens[None].expand(sparse.shape[0], -1, -1), sparse], dim=1)
    src = image_embedding.expand(tokens.shape[0], -1, -1, -1) + dense
    b, c, h, w = src.shape
    keys = src.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.expand(b, -1, -1, -1).flatten(2).permute(0, 2, 1)
    t = target[:, None, :] if target is not None else torch.zeros_like(tokens[:, :1])
    bias4 = bias[:, None, None, :] if bias is not None else None
    query_pe = tokens + t
    queries = tokens
    states = []
    transformer = decoder.transformer
    for block in transformer.layers:
        queries, keys = plain_block(block, queries + t, keys, query_pe, key_pe, bias4)
        states.append((queries, keys))
    q = queries + query_pe + t
    queries = queries + transformer.final_attn_token_to_image(q=q, k=keys + key_pe, v=keys)
    queries = transformer.norm_final_attn(queries)
    upscaled = decoder.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
    hyper = torch.stack(
        [mlp(queries[:, 1 + i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1
    )
    bb, cc, hh, ww = upscaled.shape
    masks = (hyper @ upscaled.reshape(bb, cc, hh * ww)).reshape(bb, -1, hh, ww)
    if hq:
        fused = decoder.embedding_encoder(image_embedding) + decoder.compress_vit_feat(
            interm.permute(0, 3, 1, 2)
        )
        features = decoder.embedding_maskfeature(upscaled) + fused
        hq_hyper = decoder.hf_mlp(queries[:, 1 + hyper.shape[1]])
        hq_mask = (hq_hyper[:, None] @ features.reshape(bb, cc, hh * ww)).reshape(bb, 1, hh, ww)
        masks = masks + hq_mask
    return masks, decoder.iou_prediction_head(queries[:, 0]), states


def predictor_for(sam):
    """The model's own package's predictor (segment-anything's, or segment-anything-hq's)."""
    if is_hq_decoder(sam.mask_decoder):
        from segment_anything_hq import SamPredictor as HQPredictor

        return HQPredictor(sam)
    return SamPredictor(sam)


def early_features(predictor):
    """HQ-SAM's early-layer encoder features of the predictor's image (None for SAM)."""
    interm = getattr(predictor, "interm_features", None)
    return None if interm is None else interm[0]


def official_reference_cells(predictor, mask, value):
    """The official rule: mask as RGB image (R = value), processed like the image, channel 0 > 0."""
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    rgb[..., 0] = mask.astype(np.uint8) * value
    resized = torch.as_tensor(predictor.transform.apply_image(rgb)).permute(2, 0, 1)[None]
    processed = predictor.model.preprocess(resized.float())
    grid = predictor.features.shape[-2:]
    return F.interpolate(processed, size=grid, mode="bilinear")[0, 0] > 0


def official_points(sim):
    """Top-1 positive and top-1 negative (x, y) point of an (H, W) map, as persam.py finds them."""
    _, width = sim.shape
    hi = int(sim.flatten().topk(1).indices[0])
    lo = int(sim.flatten().topk(1, largest=False).indices[0])
    return np.array([[hi % width, hi // width], [lo % width, lo // width]]), np.array([1, 0])


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("size", SIZES)
def test_unguided_decoding_equals_stock_predictor(sam, size):
    rng = np.random.default_rng(size[0] * 1000 + size[1])
    image = random_image(rng, *size)
    predictor = predictor_for(sam)
    with torch.inference_mode():
        predictor.set_image(image)
        feats = encode_image(sam, image)
        assert torch.equal(feats.embedding, predictor.features)
        if feats.hq is not None:
            fused = hq_features(sam.mask_decoder, predictor.features, early_features(predictor))
            assert torch.equal(feats.hq, fused)
        height, width = size
        points = np.array([[width * 0.3, height * 0.6], [width * 0.8, height * 0.1]])
        labels = np.array([1, 0])
        box = np.array([width * 0.1, height * 0.2, width * 0.7, height * 0.9])
        mask_input = torch.randn(1, *sam.prompt_encoder.mask_input_size).numpy()
        for kwargs in (
            {},
            {"box": box},
            {"mask_input": mask_input},
            {"box": box, "mask_input": mask_input},
        ):
            for multimask in (False, True):
                full, iou, low = predictor.predict(
                    points, labels, multimask_output=multimask, return_logits=True, **kwargs
                )
                ours_low, ours_iou = decode(
                    sam,
                    feats,
                    torch.as_tensor(points, dtype=torch.float64)[None],
                    torch.as_tensor(labels)[None],
                    boxes=None if "box" not in kwargs else torch.as_tensor(box)[None],
                    mask_inputs=None
                    if "mask_input" not in kwargs
                    else torch.as_tensor(mask_input)[None],
                )
                pick = slice(1, None) if multimask else slice(0, 1)
                if multimask and len(low) == 1:  # HQ-SAM's predictor returns the best one
                    best = 1 + int(ours_iou[0, 1:].argmax())
                    pick = slice(best, best + 1)
                ours_low, ours_iou = ours_low[:, pick], ours_iou[:, pick]
                ours_full = upsample_logits(sam, feats, ours_low)
                assert np.abs(ours_low[0].numpy() - low).max() < TOL
                assert np.abs(ours_iou[0].numpy() - iou).max() < TOL
                assert np.abs(ours_full[0].numpy() - full).max() < TOL


def test_guided_attention_equals_formula(sam):
    torch.manual_seed(0)
    attn = sam.mask_decoder.transformer.layers[0].cross_attn_token_to_image
    dim = attn.embedding_dim
    q, k = torch.randn(3, 7, dim), torch.randn(3, 50, dim)
    bias = torch.rand(3, 1, 1, 50)
    with torch.no_grad():
        expected = plain_attention(attn, q, k, k, bias)
        got = guided_attention(attn, q, k, k, bias)
        stock = attn(q=q, k=k, v=k)
    assert torch.allclose(got, expected, atol=TOL, rtol=0)
    assert not torch.allclose(got, stock, atol=1e-3), "the bias must change the attention"


@pytest.mark.parametrize("guided,semantic", [(True, False), (False, True), (True, True)])
def test_guided_decoder_equals_transcription_layer_by_layer(sam, guided, semantic):
    torch.manual_seed(1)
    decoder = sam.mask_decoder
    c = decoder.transformer_dim
    grid = sam.prompt_encoder.image_embedding_size
    image_embedding = torch.randn(1, c, *grid)
    image_pe = sam.prompt_encoder.get_dense_pe()
    sparse = torch.randn(2, 3, c)
    dense = torch.randn(2, c, *grid)
    bias = torch.rand(2, grid[0] * grid[1]) if guided else None
    target = torch.randn(2, c) if semantic else None

    captured = []
    hooks = [
        block.norm3.register_forward_hook(lambda m, i, o: captured.append(("q", o)))
        for block in decoder.transformer.layers
    ] + [
        block.norm4.register_forward_hook(lambda m, i, o: captured.append(("k", o)))
        for block in decoder.transformer.layers
    ]
    try:
        with torch.no_grad():
            masks, iou = predict_masks(
                decoder,
                image_embedding,
                image_pe,
                sparse,
                dense,
                attn_bias=bias,
                target_embedding=target,
            )
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        want_masks, want_iou, states = plain_guided_decoder(
            decoder, image_embedding, image_pe, sparse, dense, bias, target
        )
        stock_masks, _ = decoder.predict_masks(image_embedding, image_pe, sparse, dense)
    ours_q = [o for kind, o in captured if kind == "q"]
    ours_k = [o for kind, o in captured if kind == "k"]
    assert len(ours_q) == len(states) == len(decoder.transformer.layers)
    for (want_q, want_k), got_q, got_k in zip(states, ours_q, ours_k, strict=True):
        assert torch.allclose(got_q, want_q, atol=TOL, rtol=0)
        assert torch.allclose(got_k, want_k, atol=TOL, rtol=0)
    assert torch.allclose(masks, want_masks, atol=TOL, rtol=0)
    assert torch.allclose(iou, want_iou, atol=TOL, rtol=0)
    assert (masks - stock_masks).abs().max() > 1e-3, "guidance must change the output"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("value", [128, 215])
def test_paper_reference_cells_equal_official_rule(sam, size, value):
    rng = np.random.default_rng(value + size[0])
    image = random_image(rng, *size)
    h, w = size
    mask = ellipse_mask(h, w, h * 0.5, w * 0.45, h * 0.35, w * 0.3)
    predictor = SamPredictor(sam)
    config = PerSAMConfig.paper_image().prior
    config = type(config)(**{**config.__dict__, "ref_mask_value": float(value)})
    with torch.inference_mode():
        predictor.set_image(image)
        feats = encode_image(sam, image)
        want = official_reference_cells(predictor, mask, value)
        got = reference_cells(sam, feats, mask, config)
    assert want.any()
    assert torch.equal(got, want)


@pytest.mark.slow
def test_mobile_sam_decodes_as_the_stock_predictor_and_the_official_loop(mobile_sam):
    """The same exactness on MobileSAM (its encoder runs at 1024 px: one size, slow tier)."""
    test_unguided_decoding_equals_stock_predictor(mobile_sam, SIZES[0])
    test_paper_image_pipeline_equals_official_transcription(mobile_sam, SIZES[0])


@pytest.mark.parametrize("size", SIZES[:2])
def test_hq_sam_decodes_as_its_predictor_and_the_official_loop(hq_sam, size):
    """The same exactness on HQ-SAM: its predictor (hq_token_only=False) and the official loop
    with HQ-SAM's decoder transcribed."""
    test_unguided_decoding_equals_stock_predictor(hq_sam, size)
    test_paper_image_pipeline_equals_official_transcription(hq_sam, size)


@pytest.mark.parametrize("guided,semantic", [(True, False), (False, True), (True, True)])
def test_guided_hq_decoder_equals_transcription(hq_sam, guided, semantic):
    torch.manual_seed(2)
    decoder = hq_sam.mask_decoder
    c = decoder.transformer_dim
    grid = hq_sam.prompt_encoder.image_embedding_size
    image_embedding, interm = torch.randn(1, c, *grid), torch.randn(1, *grid, c)
    sparse, dense = torch.randn(2, 3, c), torch.randn(2, c, *grid)
    bias = torch.rand(2, grid[0] * grid[1]) if guided else None
    target = torch.randn(2, c) if semantic else None
    image_pe = hq_sam.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        fused = hq_features(decoder, image_embedding, interm)
        masks, iou = predict_masks(
            decoder,
            image_embedding,
            image_pe,
            sparse,
            dense,
            attn_bias=bias,
            target_embedding=target,
            hq_features=fused,
        )
        want_masks, want_iou, _ = plain_guided_decoder(
            decoder, image_embedding, image_pe, sparse, dense, bias, target, interm
        )
        plain, _ = predict_masks(
            decoder, image_embedding, image_pe, sparse, dense, hq_features=fused
        )
    assert masks.shape == (2, 4, 4 * grid[0], 4 * grid[1])
    assert torch.allclose(masks, want_masks, atol=TOL, rtol=0)
    assert torch.allclose(iou, want_iou, atol=TOL, rtol=0)
    assert (masks - plain).abs().max() > 1e-3, "guidance must change the output"
    with pytest.raises(ValueError, match="high-resolution features"):
        predict_masks(decoder, image_embedding, image_pe, sparse, dense)


@pytest.mark.parametrize("size", SIZES)
def test_paper_image_pipeline_equals_official_transcription(sam, size):
    """PerSAM(sam, paper_image) reproduces persam.py step by step on the same weights."""
    rng = np.random.default_rng(size[0] + 7 * size[1])
    h, w = size
    ref_image, test_image = random_image(rng, h, w), random_image(rng, h, w)
    ref_mask = ellipse_mask(h, w, h * 0.55, w * 0.5, h * 0.3, w * 0.3)
    predictor = predictor_for(sam)
    with torch.inference_mode():
        # Target embedding: mean of the reference features over the official cells.
        predictor.set_image(ref_image)
        ref_feat = predictor.features[0].permute(1, 2, 0)
        cells = official_reference_cells(predictor, ref_mask, 128)
        target = ref_feat[cells].mean(0)
        # Location prior on the test image.
        predictor.set_image(test_image)
        feat = predictor.features[0]
        c, fh, fw = feat.shape
        sim = F.normalize(target, dim=0) @ (feat / feat.norm(dim=0, keepdim=True)).reshape(c, -1)
        sim = F.interpolate(sim.reshape(1, 1, fh, fw), scale_factor=4, mode="bilinear")
        sim = sam.postprocess_masks(sim, predictor.input_size, predictor.original_size)[0, 0]
        points, labels = official_points(sim)
        standard = (sim - sim.mean()) / torch.std(sim)
        attn_sim = F.interpolate(standard[None, None], size=(fh, fw), mode="bilinear")
        attn_sim = attn_sim.sigmoid().flatten(1)
        # First step: guided, semantic prompting, single output.
        coords = predictor.transform.apply_coords(points, predictor.original_size)
        sparse, dense = sam.prompt_encoder(
            points=(
                torch.as_tensor(coords, dtype=torch.float)[None],
                torch.as_tensor(labels)[None],
            ),
            boxes=None,
            masks=None,
        )
        low, _, _ = plain_guided_decoder(
            sam.mask_decoder,
            feat[None],
            sam.prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            attn_sim,
            target[None],
            early_features(predictor),
        )
        logits = low[:, :1].numpy()
        # Cascaded post-refinement with the stock predictor.
        masks, scores, logits = predictor.predict(
            points, labels, mask_input=logits[0], multimask_output=True
        )
        best = int(np.argmax(scores))
        ys, xs = np.nonzero(masks[best])
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        masks, scores, logits = predictor.predict(
            points,
            labels,
            box=box[None],
            mask_input=logits[best : best + 1],
            multimask_output=True,
        )
        best = int(np.argmax(scores))

    # The transcription runs the stock SamPredictor, so PerSAM encodes with the stock attention
    # too (our faster attention equals it within 1e-4: tests/unit/test_fast_encoder.py).
    persam = PerSAM(sam, PerSAMConfig.paper_image(), FrameEncoder(sam, attention="stock"))
    result = persam.segment(test_image, persam.personalize(ref_image, ref_mask))
    np.testing.assert_array_equal(result.points, points)
    np.testing.assert_array_equal(result.labels, labels)
    np.testing.assert_allclose(result.similarity, sim.numpy(), atol=TOL)
    assert abs(result.score - float(scores[best])) < TOL
    np.testing.assert_allclose(result.logits, logits[best : best + 1], atol=1e-4)
    assert (result.mask != masks[best]).mean() < 1e-3  # pixels within float noise of 0 may flip


def test_extra_prompts_enter_the_first_step(tiny_sam):
    """A box and extra points from the tracker change the decoding; objects batch by structure."""
    rng = np.random.default_rng(3)
    image = random_image(rng, 96, 128)
    mask = ellipse_mask(96, 128, 40, 60, 20, 30)
    persam = PerSAM(tiny_sam, PerSAMConfig.paper_video())
    target = persam.personalize(image, mask)
    feats = persam.encode(image)
    plain, boxed, _ = persam.segment_features(
        feats,
        [target, target, target],
        [ExtraPrompt(), ExtraPrompt(box=(20, 10, 100, 80), points=((60, 45),)), ExtraPrompt()],
    )
    alone = persam.segment_features(
        feats, [target], [ExtraPrompt(box=(20, 10, 100, 80), points=((60, 45),))]
    )[0]
    assert plain.points.shape[0] == 2 and boxed.points.shape[0] == 3
    assert boxed.points[-1].tolist() == [60.0, 45.0] and boxed.labels[-1] == 1
    assert not torch.equal(plain.mask_logits, boxed.mask_logits)
    # Batched with others or alone, an object gets the same result.
    assert torch.allclose(alone.mask_logits, boxed.mask_logits, atol=TOL)


def test_similarity_grid_is_cosine(tiny_sam):
    rng = np.random.default_rng(5)
    feats = encode_image(tiny_sam, random_image(rng, 64, 80))
    targets = torch.randn(2, feats.embedding.shape[1])
    sim = similarity_grid(feats, targets)
    cell = feats.embedding[0, :, 3, 5]
    want = F.cosine_similarity(targets, cell[None], dim=1)
    assert torch.allclose(sim[:, 3, 5], want, atol=1e-6)
