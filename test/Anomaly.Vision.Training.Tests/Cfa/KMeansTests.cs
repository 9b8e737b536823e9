using Anomaly.Vision.Training;

namespace Anomaly.Vision.Training.Tests.Cfa;

[TestClass]
public sealed class KMeansTests
{
    [TestMethod]
    public void WellSeparatedClustersAreRecovered()
    {
        TorchRuntime.EnsureAvailable();
        float[][] centres = { new float[] { 0, 0, 0, 0 }, new float[] { 10, 10, 0, 0 }, new float[] { 0, -10, 10, 5 } };
        var random = new Random(3);
        const int perCluster = 20;
        var points = new float[3 * perCluster * 4];
        var means = new double[3, 4];
        for (int i = 0; i < 3 * perCluster; i++)
        {
            int c = i % 3;                      // interleaved, so that order gives nothing away
            for (int d = 0; d < 4; d++)
            {
                float v = centres[c][d] + (float)(random.NextDouble() - 0.5);
                points[i * 4 + d] = v;
                means[c, d] += v / perCluster;
            }
        }

        var fitted = KMeans.Fit(points, 3 * perCluster, 4, 3, seed: 0, maxIterations: 3000, out int iterations);
        Assert.IsLessThan(3000, iterations, "converged");
        var used = new bool[3];
        for (int k = 0; k < 3; k++)
        {
            // The fitted centre is the mean of the points of the true centre nearest to it.
            int c = Enumerable.Range(0, 3).MinBy(c => Enumerable.Range(0, 4).Sum(d => Math.Pow(fitted[k * 4 + d] - centres[c][d], 2)));
            Assert.IsFalse(used[c], "each true centre is found once");
            used[c] = true;
            for (int d = 0; d < 4; d++)
                Assert.AreEqual(means[c, d], fitted[k * 4 + d], 1e-4, $"centre {c} value {d}");
        }
    }

    [TestMethod]
    public void SameSeedGivesSameCentres()
    {
        TorchRuntime.EnsureAvailable();
        var random = new Random(5);
        var points = Enumerable.Range(0, 200 * 3).Select(_ => (float)random.NextDouble()).ToArray();
        var a = KMeans.Fit(points, 200, 3, 10, seed: 1, maxIterations: 3000, out _);
        var b = KMeans.Fit(points, 200, 3, 10, seed: 1, maxIterations: 3000, out _);
        CollectionAssert.AreEqual(a, b);
    }

    [TestMethod]
    public void MoreClustersThanPointsIsRejected()
    {
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => KMeans.Fit(new float[6], 3, 2, 4, 0, 10, out _));
    }
}
