using System.Numerics.Tensors;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Anomaly.Vision.Training;

/// <summary>Seeded k-means: k-means++ seeding, then Lloyd iterations until the assignment stops changing.</summary>
internal static class KMeans
{
    /// <summary>Clusters <paramref name="count"/> points of <paramref name="dimension"/> values into <paramref name="clusters"/> centres.</summary>
    /// <param name="points">Row-major points [count, dimension].</param>
    /// <param name="count">Number of points.</param>
    /// <param name="dimension">Values per point.</param>
    /// <param name="clusters">Number of centres, 1 ≤ clusters ≤ count.</param>
    /// <param name="seed">Seed of the k-means++ draws.</param>
    /// <param name="maxIterations">Most Lloyd iterations.</param>
    /// <param name="iterations">Lloyd iterations run.</param>
    /// <param name="cancellationToken">Checked between iterations.</param>
    /// <returns>Row-major centres [clusters, dimension]. A centre that loses all its points keeps its place.</returns>
    public static float[] Fit(ReadOnlySpan<float> points, int count, int dimension, int clusters, int seed, int maxIterations,
        out int iterations, CancellationToken cancellationToken = default)
    {
        if (clusters < 1 || clusters > count)
            throw new ArgumentOutOfRangeException(nameof(clusters), $"k-means needs 1 ≤ clusters ≤ {count} points (got {clusters}).");
        var centres = SeedPlusPlus(points, count, dimension, clusters, new Random(seed), cancellationToken);

        using var scope = NewDisposeScope();
        var pointsT = CfaTensors.FromArray(points, new long[] { count, dimension });
        // Points as a [1, D, count, 1] image so that a 1×1 convolution gives every point-centre dot product.
        var pointsImage = pointsT.t().contiguous().reshape(1, dimension, count, 1);
        var labels = new long[count];
        var previous = new long[count];
        var sums = new double[clusters * dimension];
        var members = new int[clusters];
        iterations = 0;
        for (int it = 0; it < maxIterations; it++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using (var step = NewDisposeScope())
            {
                var c = CfaTensors.FromArray(centres, new long[] { clusters, dimension });
                var cross = F.conv2d(pointsImage, c.reshape(clusters, dimension, 1, 1)).reshape(clusters, count);
                var distances = c.Square().sum(1, keepdim: true) - cross.Mul(2);      // ‖p‖² is the same for every centre
                var assigned = distances.argmin(0).contiguous();
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(assigned.bytes).CopyTo(labels);
            }
            iterations = it + 1;
            if (it > 0 && labels.AsSpan().SequenceEqual(previous))
                break;
            labels.CopyTo(previous, 0);

            Array.Clear(sums);
            Array.Clear(members);
            for (int i = 0; i < count; i++)
            {
                int k = (int)labels[i];
                members[k]++;
                var p = points.Slice(i * dimension, dimension);
                var s = sums.AsSpan(k * dimension, dimension);
                for (int d = 0; d < dimension; d++)
                    s[d] += p[d];
            }
            for (int k = 0; k < clusters; k++)
            {
                if (members[k] == 0)
                    continue;
                for (int d = 0; d < dimension; d++)
                    centres[k * dimension + d] = (float)(sums[k * dimension + d] / members[k]);
            }
        }
        return centres;
    }

    private static float[] SeedPlusPlus(ReadOnlySpan<float> points, int count, int dimension, int clusters, Random random,
        CancellationToken cancellationToken)
    {
        var centres = new float[clusters * dimension];
        var nearest = new double[count];
        int first = random.Next(count);
        points.Slice(first * dimension, dimension).CopyTo(centres);
        for (int i = 0; i < count; i++)
            nearest[i] = SquaredDistance(points.Slice(i * dimension, dimension), centres.AsSpan(0, dimension));
        for (int k = 1; k < clusters; k++)
        {
            if ((k & 63) == 0)
                cancellationToken.ThrowIfCancellationRequested();
            double total = 0;
            for (int i = 0; i < count; i++)
                total += nearest[i];
            int chosen;
            if (total <= 0)
            {
                chosen = random.Next(count);       // every point coincides with a centre already
            }
            else
            {
                double target = random.NextDouble() * total;
                chosen = -1;
                int lastPositive = 0;
                double acc = 0;
                for (int i = 0; i < count; i++)
                {
                    if (nearest[i] <= 0)
                        continue;
                    lastPositive = i;
                    acc += nearest[i];
                    if (acc > target)
                    {
                        chosen = i;
                        break;
                    }
                }
                if (chosen < 0)
                    chosen = lastPositive;     // the running sum fell just short of the target through rounding
            }
            var centre = centres.AsSpan(k * dimension, dimension);
            points.Slice(chosen * dimension, dimension).CopyTo(centre);
            for (int i = 0; i < count; i++)
            {
                double d = SquaredDistance(points.Slice(i * dimension, dimension), centre);
                if (d < nearest[i])
                    nearest[i] = d;
            }
        }
        return centres;
    }

    private static double SquaredDistance(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double d = TensorPrimitives.Distance(a, b);
        return d * d;
    }
}
