"""PyTorch oracle for ponder's FP8 linear layer (DeepSeek-V3 recipe), written independently of
the C++: reads x [M, K], w [N, K], g [M, N] from IN.safetensors and writes y = x w^T and the
gradients dx, dw of sum(y * g) to OUT.safetensors, every GEMM on E4M3-rounded operands with
1x128 tiles (activations, gradients) or 128x128 blocks (weights) and FP32 accumulation.
Usage: fp8_oracle.py IN OUT (torch 2.11, safetensors from the bootstrap venv)."""
import sys

import torch
from safetensors.torch import load_file, save_file

E4M3_MAX = 448.0


def quantize(t, block_rows):
    """Returns t rounded through E4M3 with one scale per block_rows x 128 block, dequantised."""
    rows, cols = t.shape
    pr, pc = -rows % block_rows, -cols % 128
    padded = torch.nn.functional.pad(t.float(), (0, pc, 0, pr))
    blocks = padded.reshape((rows + pr) // block_rows, block_rows, (cols + pc) // 128, 128)
    scale = blocks.abs().amax(dim=(1, 3), keepdim=True).clamp_min(1e-12) / E4M3_MAX
    q = (blocks / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return (q.float() * scale).reshape(rows + pr, cols + pc)[:rows, :cols]


def main():
    t = load_file(sys.argv[1])
    x, w, g = t["x"], t["w"], t["g"]
    y = quantize(x, 1) @ quantize(w, 128).T
    dx = quantize(g, 1) @ quantize(w, 128)  # K = N: the weight's blocks serve transposed
    dw = quantize(g.T.contiguous(), 1) @ quantize(x.T.contiguous(), 1).T  # K = M (tokens)
    save_file({"y": y.contiguous(), "dx": dx.contiguous(), "dw": dw.contiguous()}, sys.argv[2])


if __name__ == "__main__":
    main()
