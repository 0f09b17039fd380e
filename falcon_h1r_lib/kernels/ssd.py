"""The Mamba2 SSD (state-space duality) scan, three ways, in plain PyTorch.

Notation (Mamba2 paper, Dao & Gu 2024, §6-7; shapes in mamba's convention):
    b batch, l (or T) sequence length, h heads, p head dim (P), g groups of B/C, n state size (N),
    Q chunk length, c number of chunks.
    x: (b, l, h, p)   dt (Δ): (b, l, h)   A: (h,)   B, C: (b, l, g, n)   D: (h,)   state: (b, h, p, n)
Head i reads group i // (h // g), as in mamba and transformers.

The recurrence all three compute (per head; Ā_t = exp(Δ_t A), a scalar per head in Mamba2):
    S_t = exp(Δ_t A) S_{t-1} + Δ_t x_t B_t^T      (p, n)
    y_t = S_t C_t + D x_t                         (p,)

`dt` is taken as given: it must already be positive, i.e. after `softplus(dt + dt_bias)` and any
clamping to `time_step_limit`; the model (or `transformers_patch`) does that before calling here.
Internal arithmetic is float32 (float64 when `x` is float64); `y` comes back in `x.dtype`, the state in
that compute dtype.

- `ssd_sequential`: token by token, the ground truth.
- `ssd_chunked`: the chunked SSD algorithm (the paper's minimal listing): quadratic attention-like
  blocks inside each chunk, linear state passing between chunks.
- `ssd_step`: one decode step from a cached state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["segsum", "ssd_chunked", "ssd_chunked_core", "ssd_sequential", "ssd_step", "validate_sequence"]


# ---------------------------------------------------------------------------------------------
# validation


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _expect(fn: str, name: str, t: torch.Tensor, expected: tuple[int, ...], layout: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: `{name}` must be a torch.Tensor of shape {layout}, got {type(t).__name__}")
    if _shape(t) != expected:
        raise ValueError(f"{fn}: `{name}` expected shape {layout} = {expected}, got {_shape(t)}")


def _check_groups(fn: str, h: int, g: int) -> None:
    if g < 1 or h % g != 0:
        raise ValueError(f"{fn}: `B`/`C` groups g={g} must divide the number of heads h={h} (from `x`)")


def validate_sequence(fn, x, dt, A, B, C, D, initial_state) -> tuple[int, int, int, int, int, int]:
    """Check the (b, l, ...) inputs of a sequence scan named ``fn`` (the scans here, the dispatcher, the transformers
    patch); returns (b, l, h, p, g, n). Raises ValueError naming ``fn``, the argument and the shape it expected."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = _shape(x) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{fn}: `x` expected a 4-D tensor (b, l, h, p), got {got}")
    b, l, h, p = _shape(x)
    if not isinstance(B, torch.Tensor) or B.dim() != 4:
        got = _shape(B) if isinstance(B, torch.Tensor) else type(B).__name__
        raise ValueError(f"{fn}: `B` expected a 4-D tensor (b, l, g, n), got {got}")
    g, n = B.shape[2], B.shape[3]
    _expect(fn, "dt", dt, (b, l, h), "(b, l, h)")
    _expect(fn, "A", A, (h,), "(h,)")
    _expect(fn, "B", B, (b, l, g, n), "(b, l, g, n)")
    _expect(fn, "C", C, (b, l, g, n), "(b, l, g, n)")
    _check_groups(fn, h, g)
    if D is not None:
        _expect(fn, "D", D, (h,), "(h,)")
    if initial_state is not None:
        _expect(fn, "initial_state", initial_state, (b, h, p, n), "(b, h, p, n)")
    return b, l, h, p, g, n


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------
# one step (shared by the sequential reference and the decode step)


def _step(state, x, dt, A, B, C, D, hg: int):
    """S_t = exp(Δ_t A) S_{t-1} + Δ_t x_t B_t^T ; y_t = S_t C_t + D x_t, all in the state's dtype."""
    f = state.dtype
    dt = dt.to(f)  # (b, h)
    x = x.to(f)  # (b, h, p)
    B = B.to(f).repeat_interleave(hg, dim=1)  # (b, g, n) -> (b, h, n)
    C = C.to(f).repeat_interleave(hg, dim=1)  # (b, g, n) -> (b, h, n)
    decay = torch.exp(dt * A.to(f))  # Ā_t = exp(Δ_t A): (b, h)
    # (b, h, p, n) = decay * S_{t-1} + (Δ_t x_t) ⊗ B_t
    state = state * decay[:, :, None, None] + (x * dt[:, :, None])[..., None] * B[:, :, None, :]
    y = (state @ C[..., None]).squeeze(-1)  # S_t C_t: (b, h, p, n) @ (b, h, n, 1) -> (b, h, p)
    if D is not None:
        y = y + D.to(f)[:, None] * x  # skip connection D x_t
    return y, state


def ssd_step(state, x, dt, A, B, C, D=None):
    """One decode step from a cached state: x (b, h, p), dt (b, h), B/C (b, g, n) -> (y, new_state).

    `state` (b, h, p, n) is not modified; the new state is returned in float32 (float64 for float64 x).
    """
    fn = "ssd_step"
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        got = _shape(x) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{fn}: `x` expected a 3-D tensor (b, h, p), got {got}")
    b, h, p = _shape(x)
    if not isinstance(B, torch.Tensor) or B.dim() != 3:
        got = _shape(B) if isinstance(B, torch.Tensor) else type(B).__name__
        raise ValueError(f"{fn}: `B` expected a 3-D tensor (b, g, n), got {got}")
    g, n = B.shape[1], B.shape[2]
    _expect(fn, "state", state, (b, h, p, n), "(b, h, p, n)")
    _expect(fn, "dt", dt, (b, h), "(b, h)")
    _expect(fn, "A", A, (h,), "(h,)")
    _expect(fn, "C", C, (b, g, n), "(b, g, n)")
    _check_groups(fn, h, g)
    if D is not None:
        _expect(fn, "D", D, (h,), "(h,)")
    y, new_state = _step(state.to(_compute_dtype(x)), x, dt, A, B, C, D, h // g)
    return y.to(x.dtype), new_state


# ---------------------------------------------------------------------------------------------
# sequential reference


def ssd_sequential(x, dt, A, B, C, D=None, initial_state=None):
    """Ground truth: the recurrence token by token -> (y (b, l, h, p), final_state (b, h, p, n)).

    A zero-length sequence returns an empty y and the initial state (zeros when none is given).
    """
    b, l, h, p, g, n = validate_sequence("ssd_sequential", x, dt, A, B, C, D, initial_state)
    f = _compute_dtype(x)
    if initial_state is None:
        state = x.new_zeros((b, h, p, n), dtype=f)
    else:
        state = initial_state.to(f).clone()
    ys = []
    for t in range(l):
        y_t, state = _step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t], D, h // g)
        ys.append(y_t)  # (b, h, p)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros((b, 0, h, p), dtype=f)  # (b, l, h, p)
    return y.to(x.dtype), state


# ---------------------------------------------------------------------------------------------
# chunked SSD


def segsum(a: torch.Tensor) -> torch.Tensor:
    """Segment sums of log-decays, exp-ready: out[..., i, j] = a[..., j+1] + ... + a[..., i] for j <= i,
    -inf above the diagonal (so exp gives the causal decay matrix, 0 above it).

    Summed directly over a masked (.., T, T) copy instead of as cumsum[i] - cumsum[j]: no cancellation
    when the running sum grows large, which is what the between-chunk decays need.
    """
    T = a.size(-1)
    a = a[..., None].expand(*a.shape, T)  # (..., T, T): a_i down column j
    strict = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(-1)
    a = a.masked_fill(~strict, 0.0)
    out = a.cumsum(dim=-2)  # out[i, j] = sum_{j < k <= i} a_k
    return out.masked_fill(~strict.logical_or(torch.eye(T, dtype=torch.bool, device=a.device)), -torch.inf)


def _intra_chunk_log_decay(a_cs: torch.Tensor) -> torch.Tensor:
    """log L[i, j] = a_cs[i] - a_cs[j] for j <= i, -inf above: (..., Q) -> (..., Q, Q).

    Within a chunk the cumulative sum is bounded by Q·max|Δ A|, so the difference form (what mamba's
    Triton kernel computes) loses little and needs one pass instead of a cumsum over Q x Q.
    """
    Q = a_cs.size(-1)
    causal = torch.ones(Q, Q, dtype=torch.bool, device=a_cs.device).tril()
    return (a_cs[..., :, None] - a_cs[..., None, :]).masked_fill(~causal, -torch.inf)


def ssd_chunked_core(x, dt, A, B, C, chunk_size, D, initial_state, dims):
    """The chunked scan on inputs ``validate_sequence`` passed (``dims`` is what it returned); y and state in the
    compute dtype (float64 for float64 inputs, else float32), not cast back. Raises nothing of its own."""
    b, l, h, p, g, n = dims
    f = _compute_dtype(x)
    hg = h // g  # heads per group
    Q = chunk_size
    if l == 0:
        state = x.new_zeros((b, h, p, n), dtype=f) if initial_state is None else initial_state.to(f).clone()
        return x.new_zeros((b, 0, h, p), dtype=f), state
    c = -(-l // Q)  # number of chunks
    pad = c * Q - l  # pad the tail to c*Q tokens with dt = 0: decay exp(0) = 1 and input 0, so the
    # state after the padding is the state after the last real token.
    T = c * Q

    x = F.pad(x.to(f), (0, 0, 0, 0, 0, pad))  # (b, T, h, p)
    dt = F.pad(dt.to(f), (0, 0, 0, pad))  # (b, T, h)
    B = F.pad(B.to(f), (0, 0, 0, 0, 0, pad))  # (b, T, g, n)
    C = F.pad(C.to(f), (0, 0, 0, 0, 0, pad))  # (b, T, g, n)

    # Discretise: log-decay a_t = Δ_t A, input x̄_t = Δ_t x_t.
    a = dt * A.to(f)  # (b, T, h)
    xbar = x * dt[..., None]  # (b, T, h, p)

    # Into chunks, head-major so every contraction below is a batched matmul on contiguous blocks.
    a = a.view(b, c, Q, h).permute(0, 3, 1, 2)  # (b, h, c, Q)
    a_cs = a.cumsum(dim=-1)  # (b, h, c, Q): log-decay from the chunk start to position i, inclusive
    X = xbar.view(b, c, Q, g, hg, p).permute(0, 3, 4, 1, 2, 5).contiguous()  # (b, g, hg, c, Q, p)
    Bc = B.view(b, c, Q, g, n).permute(0, 3, 1, 2, 4)  # (b, g, c, Q, n)
    Cc = C.view(b, c, Q, g, n).permute(0, 3, 1, 2, 4)  # (b, g, c, Q, n)

    # 1. Diagonal blocks (intra-chunk, the "attention" form): Y_diag = (L ∘ C B^T) X̄.
    #    C B^T is shared by the hg heads of a group; L (the decay mask) is per head.
    CB = Cc @ Bc.transpose(-1, -2)  # (b, g, c, Q, Q): C_i · B_j
    L = torch.exp(_intra_chunk_log_decay(a_cs))  # (b, h, c, Q, Q): exp(a_cs[i] - a_cs[j]), 0 for j > i
    M = L.view(b, g, hg, c, Q, Q) * CB[:, :, None]  # (b, g, hg, c, Q, Q)
    Y = M @ X  # (b, g, hg, c, Q, p)

    # 2. Chunk states (right factor of the off-diagonal blocks): the state each chunk leaves behind when
    #    started from zero, S_c = Σ_j exp(a_cs[-1] - a_cs[j]) x̄_j B_j^T.
    decay_to_end = torch.exp(a_cs[..., -1:] - a_cs)  # (b, h, c, Q)
    Xd = X * decay_to_end.view(b, g, hg, c, Q, 1)  # (b, g, hg, c, Q, p)
    states = Xd.transpose(-1, -2) @ Bc[:, :, None]  # (b, g, hg, c, p, Q) @ (b, g, 1, c, Q, n) -> (.., p, n)
    states = states.view(b, h, c, p * n)  # (b, h, c, p*n)

    # 3. Inter-chunk recurrence (middle factor): the state entering chunk k is
    #    Σ_{z <= k} exp(sum of the whole-chunk log-decays of chunks z..k-1) S_{z-1}, with S_{-1} the
    #    initial state. Written as one (c+1) x (c+1) decay matrix, as in the paper's listing.
    if initial_state is None:
        s0 = states.new_zeros((b, h, 1, p * n))
    else:
        s0 = initial_state.to(f).reshape(b, h, 1, p * n)
    states = torch.cat([s0, states], dim=2)  # (b, h, c+1, p*n)
    chunk_decay = torch.exp(segsum(F.pad(a_cs[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    states = chunk_decay @ states  # (b, h, c+1, p*n): [k] = state entering chunk k; [c] = final
    final_state = states[:, :, -1].reshape(b, h, p, n)  # (b, h, p, n)
    S_in = states[:, :, :-1].reshape(b, g, hg, c, p, n)  # (b, g, hg, c, p, n)

    # 4. State -> output (left factor): Y_off_i = exp(a_cs[i]) C_i S_in^T.
    Y_off = Cc[:, :, None] @ S_in.transpose(-1, -2)  # (b, g, 1, c, Q, n) @ (b, g, hg, c, n, p) -> (.., Q, p)
    Y = torch.addcmul(Y, Y_off, torch.exp(a_cs).view(b, g, hg, c, Q, 1))  # (b, g, hg, c, Q, p)

    Y = Y.permute(0, 3, 4, 1, 2, 5)  # (b, g, hg, c, Q, p) -> (b, c, Q, g, hg, p), a view
    if D is None:
        y = Y.reshape(b, T, h, p)
    else:  # skip connection D x_t, written into a fresh tensor to save a pass
        y = (x * D.to(f)[:, None]).add_(Y.reshape(b, T, h, p))  # (b, T, h, p)
    return y[:, :l], final_state  # drop the padded tail: (b, l, h, p)


def ssd_chunked(x, dt, A, B, C, chunk_size, D=None, initial_state=None):
    """Chunked SSD scan -> (y (b, l, h, p), final_state (b, h, p, n)); any length, any chunk size.

    The final state is the state after the last real token (padding uses dt = 0, which leaves it
    unchanged). A zero-length sequence returns an empty y and the initial state (or zeros).
    """
    dims = validate_sequence("ssd_chunked", x, dt, A, B, C, D, initial_state)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"ssd_chunked: `chunk_size` expected a positive int, got {chunk_size!r}")
    y, state = ssd_chunked_core(x, dt, A, B, C, chunk_size, D, initial_state, dims)
    return y.to(x.dtype), state
