using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Anomaly.Vision.Training;

/// <summary>
/// The forward arithmetic of an <see cref="AllInOneCouplingBlock"/> after its subnet, on channels-first activations
/// ([rows, n], one row per channel), shared by <see cref="CflowCpuStep"/> (training) and
/// <see cref="CflowCpuInference"/> (scoring).
/// </summary>
internal static class ChannelsFirstCoupling
{
    /// <summary>A parameter's float32 values, copied.</summary>
    public static float[] Values(Tensor t)
    {
        // The scope keeps the temporaries referenced until their values have been copied.
        using var scope = NewDisposeScope();
        return MemoryMarshal.Cast<byte, float>(t.detach().contiguous().bytes).ToArray();
    }

    /// <summary>σ = 0.1 · softplus(g) with β = 0.5 (and softplus's threshold 20 on β·g), per channel; returns Σ log σ.</summary>
    public static float ScaleActivation(ReadOnlySpan<float> globalScale, Span<float> sigma)
    {
        float logSum = 0;
        for (int j = 0; j < globalScale.Length; j++)
        {
            double bg = 0.5 * globalScale[j];
            double softplus = bg > 20 ? globalScale[j] : Math.Log(1 + Math.Exp(bg)) / 0.5;
            sigma[j] = (float)(softplus * AllInOneCouplingBlock.CouplingScale);
            logSum += MathF.Log(sigma[j]);
        }
        return logSum;
    }

    /// <summary>
    /// The affine coupling from the subnet's scaled output a = (a₁; t): s = α·tanh(a₁) into <paramref name="log"/>,
    /// eˢ into <paramref name="exp"/> (which may be <paramref name="log"/> itself when s is not needed afterwards),
    /// x₂·eˢ + t into <paramref name="coupled"/>, and Σ s + Σ log σ added to each column's log-determinant.
    /// </summary>
    public static void AffineCoupling(ReadOnlySpan<float> a, ReadOnlySpan<float> x2, int split2, int n, float clamp,
        float logSigmaSum, Span<float> log, Span<float> exp, Span<float> coupled, Span<float> logDet)
    {
        int size = split2 * n;
        TensorPrimitives.Tanh(a.Slice(0, size), log);
        TensorPrimitives.Multiply(log, clamp, log);
        for (int r = 0; r < split2; r++)
            TensorPrimitives.Add(logDet, log.Slice(r * n, n), logDet);
        TensorPrimitives.Add(logDet, logSigmaSum, logDet);
        TensorPrimitives.Exp(log, exp);
        TensorPrimitives.FusedMultiplyAdd(x2, exp, a.Slice(size, size), coupled);
    }

    /// <summary>
    /// y = P(u·σ + β) for u = (x₁; coupled): row j of y is row perm[j] of v, or y = R·v with a rotation (then v goes
    /// through <paramref name="mixed"/>).
    /// </summary>
    public static void Mix(ReadOnlySpan<float> input, ReadOnlySpan<float> coupled, int split1, int channels, int n,
        ReadOnlySpan<float> sigma, ReadOnlySpan<float> offset, int[]? permutation, float[]? rotation, Span<float> mixed, Span<float> output)
    {
        var v = rotation is null ? output : mixed;
        for (int j = 0; j < channels; j++)
        {
            int from = permutation?[j] ?? j;
            var u = from < split1 ? input.Slice(from * n, n) : coupled.Slice((from - split1) * n, n);
            var row = v.Slice(j * n, n);
            TensorPrimitives.Multiply(u, sigma[from], row);
            TensorPrimitives.Add(row, offset[from], row);
        }
        if (rotation is not null)
            SmallGemm.Multiply(channels, n, channels, rotation, channels, 1, v, n, output, n, accumulate: false);
    }
}
