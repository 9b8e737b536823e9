using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Anomaly.Vision.Training;

/// <summary>Memory-bank arithmetic of CFA.</summary>
internal static class MemoryBank
{
    /// <summary>
    /// Squared euclidean distances ‖f‖² + ‖c‖² − 2 f·c of every patch feature to every bank entry.
    /// </summary>
    /// <param name="features">Target-oriented features [B, C, H, W].</param>
    /// <param name="bankAsKernel">The bank [M, C] viewed as a 1×1 convolution kernel [M, C, 1, 1].</param>
    /// <param name="bankSquaredNorms">‖c‖² of each entry, shaped [1, M, 1, 1].</param>
    /// <returns>Distances [B, M, H, W] (entries along dimension 1).</returns>
    public static Tensor SquaredDistances(Tensor features, Tensor bankAsKernel, Tensor bankSquaredNorms)
    {
        var featureNorms = features.Square().sum(1, keepdim: true);
        var cross = F.conv2d(features, bankAsKernel);
        return featureNorms.Add(bankSquaredNorms) - cross.Mul(2);
    }

    /// <summary>
    /// The <paramref name="k"/> smallest squared distances of every patch feature to the bank, ascending, and the
    /// entries they belong to. The ranking uses ‖c‖² − 2 f·c, one 1×1 convolution with kernel −2c and bias ‖c‖²;
    /// ‖f‖², the same for every entry, is added to the k values afterwards. The bank is taken
    /// <paramref name="entriesPerChunk"/> entries at a time, each chunk's k smallest kept and the survivors ranked
    /// again, so the patches × bank tensor never exists whole. Runs without gradient tracking.
    /// </summary>
    /// <param name="features">Target-oriented features [B, C, H, W].</param>
    /// <param name="minusTwoBankAsKernel">−2 × the bank [M, C], shaped [M, C, 1, 1].</param>
    /// <param name="bankSquaredNorms">‖c‖² of each entry, shaped [M].</param>
    /// <param name="k">Number of distances kept per patch.</param>
    /// <param name="entriesPerChunk">Bank entries ranked per convolution; M or more ranks the whole bank at once.</param>
    /// <returns>Distances and entry indices, both [B, k, H, W].</returns>
    public static (Tensor Values, Tensor Indices) Nearest(Tensor features, Tensor minusTwoBankAsKernel, Tensor bankSquaredNorms, int k, long entriesPerChunk)
    {
        using var noGrad = no_grad();
        var detached = features.detach();
        long entries = minusTwoBankAsKernel.shape[0];
        Tensor values, indices;
        if (entriesPerChunk >= entries)
        {
            (values, indices) = F.conv2d(detached, minusTwoBankAsKernel, bankSquaredNorms).topk(k, 1, largest: false, sorted: true);
        }
        else
        {
            var chunkValues = new List<Tensor>();
            var chunkIndices = new List<Tensor>();
            for (long start = 0; start < entries; start += entriesPerChunk)
            {
                long count = Math.Min(entriesPerChunk, entries - start);
                var partial = F.conv2d(detached, minusTwoBankAsKernel.narrow(0, start, count), bankSquaredNorms.narrow(0, start, count));
                var (v, i) = partial.topk((int)Math.Min(k, count), 1, largest: false, sorted: true);
                partial.Dispose();
                chunkValues.Add(v);
                chunkIndices.Add(i.AddInPlace(start));
            }
            var (merged, position) = cat(chunkValues, 1).topk(k, 1, largest: false, sorted: true);
            values = merged;
            indices = cat(chunkIndices, 1).gather(1, position);
        }
        return (values.AddInPlace(detached.Square().sum(1, keepdim: true)), indices);
    }

    /// <summary>
    /// Gradient of a loss with respect to the features, given its gradient with respect to the nearest squared
    /// distances: ∂d_j/∂f = 2 (f − c_j), so ∂L/∂f = 2 (Σ_j g_j) f − 2 Σ_j g_j c_j. Only the k selected entries contribute,
    /// which is what back-propagating through the dense distance tensor and top-k gives, without that tensor.
    /// </summary>
    /// <param name="features">Target-oriented features [B, C, H, W].</param>
    /// <param name="distanceGradient">∂L/∂d for the nearest distances [B, k, H, W].</param>
    /// <param name="indices">Their bank entries [B, k, H, W].</param>
    /// <param name="bank">The bank [M, C].</param>
    /// <returns>∂L/∂f [B, C, H, W].</returns>
    public static Tensor FeatureGradient(Tensor features, Tensor distanceGradient, Tensor indices, Tensor bank)
    {
        using var noGrad = no_grad();
        long b = features.shape[0], c = features.shape[1], h = features.shape[2], w = features.shape[3];
        int k = (int)indices.shape[1];
        // In-place arithmetic where possible: fresh large tensors cost page faults on every step.
        Tensor? weighted = null;
        for (int j = 0; j < k; j++)
        {
            var entries = bank.index_select(0, indices.select(1, j).reshape(-1)).reshape(b, h, w, c);
            entries.mul_(distanceGradient.select(1, j).unsqueeze(-1));
            if (weighted is null)
            {
                weighted = entries;
            }
            else
            {
                weighted.AddInPlace(entries);
                entries.Dispose();
            }
        }
        var gradient = features.detach() * distanceGradient.sum(1, keepdim: true);
        gradient.sub_(weighted!.permute(0, 3, 1, 2));
        weighted.Dispose();
        return gradient.MulInPlace(2);
    }

    /// <summary>
    /// The same gradient on patch-major arrays: row p of <paramref name="gradient"/> is
    /// 2 (Σ_j g_pj) f_p − 2 Σ_j g_pj c_(e_pj), over the k selected entries e_pj of patch p.
    /// </summary>
    /// <param name="features">Patch features, patch-major [P, C].</param>
    /// <param name="distanceGradient">∂L/∂d of each patch's k distances [P, k].</param>
    /// <param name="entries">The entries of those distances [P, k].</param>
    /// <param name="bank">The bank, patch-major [M, C].</param>
    /// <param name="channels">C.</param>
    /// <param name="k">Distances per patch.</param>
    /// <param name="gradient">Receives ∂L/∂f [P, C].</param>
    public static void FeatureGradient(ReadOnlySpan<float> features, ReadOnlySpan<float> distanceGradient, ReadOnlySpan<int> entries,
        ReadOnlySpan<float> bank, int channels, int k, Span<float> gradient)
    {
        int patches = distanceGradient.Length / k;
        for (int p = 0; p < patches; p++)
        {
            ReadOnlySpan<float> g = distanceGradient.Slice(p * k, k);
            Span<float> row = gradient.Slice(p * channels, channels);
            TensorPrimitives.Multiply(features.Slice(p * channels, channels), 2 * TensorPrimitives.Sum(g), row);
            for (int j = 0; j < k; j++)
            {
                // Inactive hinge terms have no gradient; skip their bank rows.
                if (g[j] != 0)
                    TensorPrimitives.MultiplyAdd(bank.Slice(entries[p * k + j] * channels, channels), -2 * g[j], row, row);
            }
        }
    }

    /// <summary>‖c‖² of each bank entry [M, C], shaped [1, M, 1, 1].</summary>
    public static Tensor SquaredNorms(Tensor bank) => bank.Square().sum(1).reshape(1, -1, 1, 1);

    /// <summary>
    /// Folds one batch's mean into the running bank as anomalib's CFA does: bank ← (bank·i + batchMean) / (i + 1),
    /// so the result is the mean of the batch means.
    /// </summary>
    /// <param name="running">Running mean [C, H, W], or <see langword="null"/> before the first batch.</param>
    /// <param name="batchMean">The mean of the batch's target-oriented features [C, H, W].</param>
    /// <param name="batchIndex">Index i of the batch, from 0.</param>
    public static Tensor Accumulate(Tensor? running, Tensor batchMean, int batchIndex)
    {
        if (running is null)
            return batchMean;
        return running.Mul(batchIndex).Add(batchMean).Div(batchIndex + 1);
    }

    /// <summary>A [C, H, W] map as a patch-major [H·W, C] bank.</summary>
    public static Tensor ToPatchMajor(Tensor map) => map.permute(1, 2, 0).reshape(map.shape[1] * map.shape[2], map.shape[0]).contiguous();
}
