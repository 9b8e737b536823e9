using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training;

/// <summary>
/// The coupled-hypersphere loss of CFA, as anomalib's CFA computes it. Of each patch's
/// <c>k = nearest + hardNegatives</c> smallest squared distances (ascending), the first <c>nearest</c> are pulled
/// inside the radius (attraction: mean of max(0, d − r²)) and those from rank <c>hardNegatives</c> on are pushed out
/// by a margin (repulsion: mean of max(0, r² − d − 0.1)); the loss is (attraction + repulsion) × 1000.
/// </summary>
internal static class CfaLoss
{
    /// <summary>The repulsion margin.</summary>
    public const float Margin = 0.1f;

    /// <summary>The loss scale.</summary>
    public const float Scale = 1000f;

    /// <summary>Computes the loss of a distance tensor.</summary>
    /// <param name="squaredDistances">Squared distances of each patch to every memory-bank entry; the entries lie along <paramref name="entryDim"/>.</param>
    /// <param name="entryDim">The dimension that indexes memory-bank entries.</param>
    /// <param name="nearestNeighbors">Number of nearest neighbours attracted.</param>
    /// <param name="hardNegatives">Number of hard negative features.</param>
    /// <param name="radius">Hypersphere radius (constant).</param>
    /// <returns>A scalar tensor.</returns>
    public static Tensor Compute(Tensor squaredDistances, long entryDim, int nearestNeighbors, int hardNegatives, float radius)
    {
        int k = nearestNeighbors + hardNegatives;
        if (squaredDistances.shape[entryDim] < k)
            throw new ArgumentException(
                $"The memory bank has {squaredDistances.shape[entryDim]} entries, fewer than the {k} nearest neighbours plus hard negatives the loss needs.",
                nameof(squaredDistances));
        var nearest = squaredDistances.topk(k, (int)entryDim, largest: false, sorted: true).values;
        return FromNearest(nearest, entryDim, nearestNeighbors, hardNegatives, radius);
    }

    /// <summary>Computes the loss from each patch's k = nearest + hardNegatives smallest squared distances, sorted ascending along <paramref name="entryDim"/>.</summary>
    public static Tensor FromNearest(Tensor nearest, long entryDim, int nearestNeighbors, int hardNegatives, float radius)
    {
        int k = nearestNeighbors + hardNegatives;
        if (nearest.shape[entryDim] != k)
            throw new ArgumentException($"Expected {k} distances per patch, got {nearest.shape[entryDim]}.", nameof(nearest));
        float r2 = radius * radius;

        var attract = nearest.narrow(entryDim, 0, nearestNeighbors).Sub(r2);
        var attraction = maximum(zeros_like(attract), attract).mean();

        var repel = ScalarMath.SubFrom(r2, nearest.narrow(entryDim, hardNegatives, k - hardNegatives));
        var repulsion = maximum(zeros_like(repel), repel.Sub(Margin)).mean();

        return attraction.Add(repulsion).Mul(Scale);
    }
}
