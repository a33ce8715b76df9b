"""Per-query contributions ``c(i, j)`` of a token mixer that is linear in its mixed signal.

Two forms cover the published mixers (:mod:`.definitions` builds them from a mixer and its
input):

- :class:`GatedConvContribution`: a per-channel convolution of a signal ``s`` with a
  kernel ``K``, gated per query by ``g``, optionally through a layer norm whose statistics
  are those of the query's whole output (held fixed), then a linear projection:
  ``z(i, j) = g(i) * K(i - j) * s(j)`` (plus ``g(i) * b * s(i)`` at ``j = i`` for a skip
  ``b``), ``c(i, j) = W LN_i(z(i, j))``. H_px and its ablations, H_b (the kernel on the
  flattened token order) and SepConv (no gate, the depthwise kernel) are of this form.
- :class:`AttentionContribution`: ``c(i, j) = sum_h alpha_h(i, j) W_O^h W_V^h x_j``.

Both give, for a chunk of query tokens, the contributions from every key token as a
``(Q, N, C_out)`` tensor, and the rest ``e(i)`` (biases) as ``(Q, C_out)``; their sum
over keys plus the rest is the mixer's output.

The layer norm with fixed statistics (Kobayashi et al., EMNLP 2021): with ``mu(i)`` and
``sigma(i)`` the mean and standard deviation over channels of the whole ``z(i) = sum_j
z(i, j) + o(i)``, each part is mapped to ``(z(i, j) - mean_c z(i, j)) / sigma(i) * w``;
the parts add up to the norm's output (its bias and the offset ``o`` go to the rest).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GatedConvContribution", "AttentionContribution", "kernel_taps"]


def kernel_taps(kernel: torch.Tensor, centre: tuple[int, ...], offsets: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``K(d)`` for integer offsets ``d``: the kernel's tap ``centre + d``, zero outside it.

    Args:
        kernel: ``(C, *K)`` per-channel kernel of a true convolution.
        centre: index of offset 0 along each kernel axis.
        offsets: one integer tensor per kernel axis, all of one shape ``S``.

    Returns:
        torch.Tensor: ``(*S, C)`` taps.
    """
    inside = torch.ones_like(offsets[0], dtype=torch.bool)
    index = []
    for axis, (c, d) in enumerate(zip(centre, offsets)):
        i = d + c
        size = kernel.shape[axis + 1]
        inside &= (i >= 0) & (i < size)
        index.append(i.clamp(0, size - 1))
    taps = kernel[(slice(None), *index)]  # (C, *S)
    return taps.movedim(0, -1) * inside.unsqueeze(-1).to(taps.dtype)


@dataclass
class GatedConvContribution:
    """``c(i, j) = W LN_i(g(i) * K(i - j) * s(j))`` on a grid of tokens (module docstring).

    Args:
        signal: ``(N, C)`` the mixed signal ``s`` of each token (raster order).
        kernel: ``(C, kh, kw)`` (2D grid) or ``(C, Lf)`` (flattened order) true-convolution
            kernel, ``y(i) = sum_j K(i - j) s(j)``.
        centre: index of offset 0 on each kernel axis.
        grid: ``(h, w)`` token grid, ``N = h * w``.
        gate: ``(N, C)`` gate ``g`` of each query, or None.
        skip: ``(C,)`` weight of ``s(i)`` added at ``j = i``, or None.
        offset: ``(N, C)`` signal-independent part of the convolution's output (bias
            fields), or None; gated, it goes to the rest.
        norm_weight, norm_bias, norm_eps: the output layer norm (None: no norm).
        proj_weight, proj_bias: ``(C_out, C)`` output projection and its bias (None: none).
        prefix: tokens before the grid (always 0 here; attention has class tokens).
    """

    signal: torch.Tensor
    kernel: torch.Tensor
    centre: tuple[int, ...]
    grid: tuple[int, int]
    gate: torch.Tensor | None = None
    skip: torch.Tensor | None = None
    offset: torch.Tensor | None = None
    norm_weight: torch.Tensor | None = None
    norm_bias: torch.Tensor | None = None
    norm_eps: float = 1e-5
    proj_weight: torch.Tensor | None = None
    proj_bias: torch.Tensor | None = None
    prefix: int = 0

    @property
    def channels(self) -> int:
        """Channels of the contributions (the projection's outputs)."""
        return self.proj_weight.shape[0] if self.proj_weight is not None else self.signal.shape[1]

    @property
    def width(self) -> int:
        """Widest per-token vector of the computation (for chunk sizes)."""
        return max(self.channels, self.signal.shape[1])

    @property
    def device(self) -> torch.device:
        """Where the computation runs (the signal's device)."""
        return self.signal.device

    def __post_init__(self):
        # Every offset a query can have on this grid, K(d) for d in [-(n - 1), n - 1] per
        # axis, reversed and taps last: the keys of query q are then one contiguous window
        # of it, starting at n - 1 - q (zero where the kernel has no tap).
        extent = self.grid if self.kernel.ndim == 3 else (self.grid[0] * self.grid[1],)
        axes = [torch.arange(n - 1, -n, -1, device=self.kernel.device) for n in extent]
        offsets = torch.meshgrid(*axes, indexing="ij")
        self._reversed = kernel_taps(self.kernel, self.centre, offsets).contiguous()  # (2h-1, 2w-1, C)
        self._extent = extent

    def _ungated(self, queries: torch.Tensor) -> torch.Tensor:
        """``K(i - j) * s(j)`` (plus the skip at ``j = i``), ``(Q, N, C)``."""
        dev = self._reversed.device
        if len(self._extent) == 1:
            n = self._extent[0]
            index = (n - 1 - queries)[:, None] + torch.arange(n, device=dev)[None]
        else:
            h, w = self._extent
            rows = (h - 1 - queries // w)[:, None, None] + torch.arange(h, device=dev)[None, :, None]
            cols = (w - 1 - queries % w)[:, None, None] + torch.arange(w, device=dev)[None, None, :]
            index = rows * (2 * w - 1) + cols
        flat = self._reversed.reshape(-1, self.signal.shape[1])
        z = flat.index_select(0, index.reshape(-1)).reshape(len(queries), -1, self.signal.shape[1])
        z *= self.signal[None]
        if self.skip is not None:
            z[torch.arange(len(queries), device=z.device), queries] += self.skip * self.signal[queries]
        return z

    def _weights(self) -> torch.Tensor:
        """``(C_out, C)``: the projection, with the norm's weight and its centring over
        channels folded in (``(z - mean_c z) W^T = z (W - mean_row W)^T``)."""
        c = self.signal.shape[1]
        weight = self.proj_weight
        if weight is None:
            weight = torch.eye(c, dtype=self.signal.dtype, device=self.signal.device)
        if self.norm_weight is None:
            return weight
        folded = weight * self.norm_weight
        return folded - folded.mean(1, keepdim=True)

    def _query_scale(self, queries: torch.Tensor, z: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Per query and channel: the gate, divided by the norm's ``sigma(i)`` (``(Q, C)``)."""
        gate = self.gate[queries] if self.gate is not None else torch.ones_like(offset)
        if self.norm_weight is None:
            return gate
        total = (z.sum(1) + offset) * gate  # the whole z(i) of each query
        sigma = torch.sqrt(total.var(-1, unbiased=False, keepdim=True) + self.norm_eps)
        return gate / sigma

    @torch.no_grad()
    def contributions(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The contributions to a chunk of query tokens.

        Args:
            queries: ``(Q,)`` token indices (raster order).

        Returns:
            tuple: ``c`` ``(Q, N, C_out)`` from every key token and the rest ``e`` ``(Q, C_out)``.
        """
        z = self._ungated(queries)
        offset = self.offset[queries] if self.offset is not None else torch.zeros_like(z[:, 0])
        scale = self._query_scale(queries, z, offset)
        z *= scale[:, None]
        weight = self._weights().T
        c = z @ weight  # (Q, N, C_out): one matrix product for the whole chunk
        rest = (offset * scale) @ weight
        if self.norm_bias is not None:
            proj = self.proj_weight if self.proj_weight is not None else torch.diag(torch.ones_like(self.norm_bias))
            rest = rest + self.norm_bias @ proj.T
        if self.proj_bias is not None:
            rest = rest + self.proj_bias
        return c, rest


@dataclass
class AttentionContribution:
    """``c(i, j) = sum_h alpha_h(i, j) W_O^h W_V^h x_j`` (Kobayashi et al., EMNLP 2020).

    Args:
        q, k: ``(H, N, d)`` queries and keys after any query/key norm, ``q`` scaled.
        values: ``(H, N, C_out)`` each head's value projected by its slice of ``W_O``
            (value bias left out).
        rest: ``(C_out,)`` ``W_O b_V + b_O`` (the value bias passes through the weights,
            which sum to 1).
        grid: ``(h, w)`` token grid of the non-prefix tokens.
        prefix: tokens before the grid (class, register tokens); their contributions are
            computed, but they are not grid tokens.
    """

    q: torch.Tensor
    k: torch.Tensor
    values: torch.Tensor
    rest: torch.Tensor
    grid: tuple[int, int]
    prefix: int = 0

    @property
    def channels(self) -> int:
        """Channels of the contributions."""
        return self.values.shape[-1]

    @property
    def width(self) -> int:
        """Widest per-token vector of the computation (for chunk sizes)."""
        return self.channels * 2

    @property
    def device(self) -> torch.device:
        """Where the computation runs."""
        return self.values.device

    @torch.no_grad()
    def weights(self, queries: torch.Tensor) -> torch.Tensor:
        """``alpha`` ``(H, Q, N)`` of a chunk of query tokens (indices among all tokens)."""
        return torch.softmax(self.q[:, queries] @ self.k.transpose(-1, -2), dim=-1)

    @torch.no_grad()
    def contributions(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The contributions to a chunk of query tokens.

        Args:
            queries: ``(Q,)`` indices among all tokens (prefix tokens first).

        Returns:
            tuple: ``c`` ``(Q, N, C_out)`` from every token and the rest ``e`` ``(Q, C_out)``.
        """
        alpha = self.weights(queries)
        c = alpha[0, :, :, None] * self.values[0]  # a sum over heads (einsum was 50x slower on CPU)
        for h in range(1, alpha.shape[0]):
            c.addcmul_(alpha[h, :, :, None], self.values[h])
        return c, self.rest.expand(len(queries), -1)
