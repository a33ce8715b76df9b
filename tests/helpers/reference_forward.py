"""An independent, functional re-statement of the published models (REFERENCE.md) that
reads tensors straight from a state dict and uses direct (non-FFT) convolutions. The
tests compare the model classes against it."""

import torch
import torch.nn.functional as F


def ln(x, w, b=None, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], w, b, eps)


def sin_net(sd, p, z, n_layers, layer):
    """The implicit filter network: ``layer`` (1x1 conv or linear) and sin(freq * x) alternating."""
    h = z
    for i in range(n_layers):
        h = layer(h, sd[f"{p}.{2 * i}.weight"], sd.get(f"{p}.{2 * i}.bias"))
        if i < n_layers - 1:
            h = torch.sin(sd[f"{p}.{2 * i + 1}.freq"] * h)
    return h


def hpx_mixer(sd, p, x):
    C = x.shape[-1]
    t = x.permute(0, 3, 1, 2)
    t = F.conv2d(t, sd[f"{p}.pointwise_conv.weight"], sd[f"{p}.pointwise_conv.bias"])
    t = F.conv2d(t, sd[f"{p}.depthwise_conv.weight"], sd[f"{p}.depthwise_conv.bias"], padding=2, groups=3 * C)
    q, k, v = t.split(C, 1)
    u = q * k
    normed = f"{p}.qk_norm.weight" in sd
    if normed:
        u = ln(u.permute(0, 2, 3, 1), sd[f"{p}.qk_norm.weight"], eps=1e-5).permute(0, 3, 1, 2)
    lc = f"{p}.long_conv"
    K = sin_net(sd, f"{lc}.implicit_filter", sd[f"{lc}.z"], 3, F.conv2d)
    K = K * (torch.exp(-sd[f"{lc}.distance_map"] * sd[f"{lc}.deltas"].abs()) + sd[f"{lc}.shift"])
    K = K[0]
    # taps further than the input extent never meet an input pixel: drop them (keeps the
    # direct convolution cheap for small test inputs)
    H, W = u.shape[-2:]
    ch, cw = K.shape[-2] // 2, K.shape[-1] // 2
    rh, rw = min(ch, H - 1), min(cw, W - 1)
    K = K[:, ch - rh : ch + rh + 1, cw - rw : cw + rw + 1]
    kh, kw = K.shape[-2:]
    y = F.conv2d(u, K.flip(-1, -2).unsqueeze(1), padding=(kh // 2, kw // 2), groups=C)
    y = y + u * sd[f"{lc}.bias"]
    out = v * y
    if normed:
        out = ln(out.permute(0, 2, 3, 1), sd[f"{p}.out_norm.weight"], eps=1e-5)
        return F.linear(out, sd[f"{p}.out_proj.weight"], sd[f"{p}.out_proj.bias"])
    out = F.conv2d(out, sd[f"{p}.out_proj.weight"], sd[f"{p}.out_proj.bias"])
    return out.permute(0, 2, 3, 1)


def hb_mixer(sd, p, x):
    B, H, W, C = x.shape
    t = F.linear(x.reshape(B, H * W, C), sd[f"{p}.in_proj.weight"], sd[f"{p}.in_proj.bias"]).transpose(1, 2)
    t = F.conv1d(t, sd[f"{p}.short_filter.weight"], sd[f"{p}.short_filter.bias"], padding=1, groups=3 * C)
    x0, x1, v = t.split(C, 1)
    v = v * x1
    if f"{p}.qk_norm.0.weight" in sd:
        v = ln(v.transpose(1, 2), sd[f"{p}.qk_norm.0.weight"], eps=1e-5).transpose(1, 2)
    ff = f"{p}.filter_fn"
    k = sin_net(sd, f"{ff}.implicit_filter", sd[f"{ff}.pos_emb.z"], 4, F.linear)[0]  # (Lf, C)
    k = (k * torch.exp(-sd[f"{ff}.pos_emb.t"][0] * sd[f"{ff}.modulation.deltas"][0].abs())).T
    L, c = v.shape[-1], k.shape[-1] // 2
    r = min(c, L - 1)
    k = k[:, c - r : c + r + 1]
    Lf = k.shape[-1]
    y = F.conv1d(v, k.flip(-1).unsqueeze(1), padding=Lf // 2, groups=C) + v * sd[f"{ff}.bias"][None, :, None]
    y = (y * x0).transpose(1, 2)
    if f"{p}.out_norm.weight" in sd:
        y = ln(y, sd[f"{p}.out_norm.weight"], eps=1e-5)
    return F.linear(y, sd[f"{p}.out_proj.weight"], sd[f"{p}.out_proj.bias"]).reshape(B, H, W, C)


def sepconv_mixer(sd, p, x):
    t = F.linear(x, sd[f"{p}.pwconv1.weight"])
    t = sd[f"{p}.act1.scale"] * F.relu(t) ** 2 + sd[f"{p}.act1.bias"]
    w = sd[f"{p}.dwconv.weight"]
    t = F.conv2d(t.permute(0, 3, 1, 2), w, padding=3, groups=w.shape[0]).permute(0, 2, 3, 1)
    return F.linear(t, sd[f"{p}.pwconv2.weight"])


def attention_mixer(sd, p, x):
    B, H, W, C = x.shape
    heads = C // 32
    qkv = F.linear(x.reshape(B, H * W, C), sd[f"{p}.qkv.weight"]).reshape(B, H * W, 3, heads, 32)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    a = ((q @ k.transpose(-1, -2)) * 32**-0.5).softmax(-1)
    y = (a @ v).transpose(1, 2).reshape(B, H, W, C)
    return F.linear(y, sd[f"{p}.proj.weight"])


def mixer(sd, p, x):
    if f"{p}.long_conv.z" in sd:
        return hpx_mixer(sd, p, x)
    if f"{p}.filter_fn.pos_emb.z" in sd:
        return hb_mixer(sd, p, x)
    if f"{p}.pwconv1.weight" in sd:
        return sepconv_mixer(sd, p, x)
    return attention_mixer(sd, p, x)


def model_forward(sd, img):
    """Logits of a published-layout MetaFormer given its state dict."""
    x = F.conv2d(img, sd["downsample_layers.0.conv.weight"], sd["downsample_layers.0.conv.bias"], stride=4, padding=2)
    x = ln(x.permute(0, 2, 3, 1), sd["downsample_layers.0.post_norm.weight"])
    for i in range(4):
        if i > 0:
            d = f"downsample_layers.{i}"
            x = ln(x, sd[f"{d}.pre_norm.weight"]).permute(0, 3, 1, 2)
            x = F.conv2d(x, sd[f"{d}.conv.weight"], sd[f"{d}.conv.bias"], stride=2, padding=1).permute(0, 2, 3, 1)
        j = 0
        while f"stages.{i}.{j}.norm1.weight" in sd:
            b = f"stages.{i}.{j}"
            rs1 = sd.get(f"{b}.res_scale1.scale", 1.0)
            rs2 = sd.get(f"{b}.res_scale2.scale", 1.0)
            x = x * rs1 + mixer(sd, f"{b}.token_mixer", ln(x, sd[f"{b}.norm1.weight"]))
            h = F.linear(ln(x, sd[f"{b}.norm2.weight"]), sd[f"{b}.mlp.fc1.weight"])
            h = sd[f"{b}.mlp.act.scale"] * F.relu(h) ** 2 + sd[f"{b}.mlp.act.bias"]
            x = x * rs2 + F.linear(h, sd[f"{b}.mlp.fc2.weight"])
            j += 1
    x = ln(x.mean((1, 2)), sd["norm.weight"], sd["norm.bias"])
    x = F.relu(F.linear(x, sd["head.fc1.weight"], sd["head.fc1.bias"])) ** 2
    x = F.layer_norm(x, x.shape[-1:], sd["head.norm.weight"], sd["head.norm.bias"], 1e-5)
    return F.linear(x, sd["head.fc2.weight"], sd["head.fc2.bias"])
