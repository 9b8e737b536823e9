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
        var featureNorms = features.pow(2).sum(1, keepdim: true);
        var cross = F.conv2d(features, bankAsKernel);
        return featureNorms + bankSquaredNorms - 2 * cross;
    }

    /// <summary>‖c‖² of each bank entry [M, C], shaped [1, M, 1, 1].</summary>
    public static Tensor SquaredNorms(Tensor bank) => bank.pow(2).sum(1).reshape(1, -1, 1, 1);

    /// <summary>
    /// Folds one batch's mean into the running bank as anomalib's CFA does: bank ← (bank·i + mean_b(features)) / (i + 1),
    /// so the result is the mean of the batch means.
    /// </summary>
    /// <param name="running">Running mean [C, H, W], or <see langword="null"/> before the first batch.</param>
    /// <param name="features">The batch's target-oriented features [B, C, H, W].</param>
    /// <param name="batchIndex">Index i of the batch, from 0.</param>
    public static Tensor Accumulate(Tensor? running, Tensor features, int batchIndex)
    {
        var batchMean = features.mean(new long[] { 0 });
        if (running is null)
            return batchMean;
        return (running * batchIndex + batchMean) / (batchIndex + 1);
    }

    /// <summary>A [C, H, W] map as a patch-major [H·W, C] bank.</summary>
    public static Tensor ToPatchMajor(Tensor map) => map.permute(1, 2, 0).reshape(map.shape[1] * map.shape[2], map.shape[0]).contiguous();
}
