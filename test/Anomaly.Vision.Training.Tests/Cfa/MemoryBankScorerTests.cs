using Anomaly.Vision.Training;

namespace Anomaly.Vision.Training.Tests.Cfa;

[TestClass]
public sealed class MemoryBankScorerTests
{
    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void TinyBankMatchesHandComputedDistances(bool useVector512)
    {
        // Bank: 3 entries × 5 channels.
        float[] bank =
        {
            1, 0, 0, 0, 0,
            0, 2, 0, 0, 0,
            1, 1, 1, 1, 1,
        };
        // 4 patches × 5 channels.
        float[] features =
        {
            0, 0, 0, 0, 0,   // to bank: 1, 4, 5
            1, 0, 0, 0, 0,   // 0, 5, 4
            0, 2, 0, 0, 1,   // 6, 1, 4
            1, 1, 1, 1, 2,   // 7, 8, 1
        };
        float[] expected =
        {
            1, 4,
            0, 4,
            1, 4,
            1, 7,
        };

        var scorer = new MemoryBankScorer(bank, 3, 5, useVector512, depthBlock: 2, projectionRank: 0);
        var distances = new float[8];
        scorer.NearestSquaredDistances(features, 4, 2, distances);

        CollectionAssert.AreEqual(expected, distances);
    }

    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void KEqualToBankSizeReturnsAllDistancesAscending(bool useVector512)
    {
        float[] bank = { 3, 0, 0, 1, 1, 1 };          // 3 entries × 2 channels
        float[] features = { 0, 0 };                  // squared distances 9, 1, 2
        var distances = new float[3];
        new MemoryBankScorer(bank, 3, 2, useVector512, depthBlock: 1, projectionRank: 0).NearestSquaredDistances(features, 1, 3, distances);
        CollectionAssert.AreEqual(new float[] { 1, 2, 9 }, distances);
    }

    [TestMethod]
    [DataRow(true, 1, 1, 1, 1, 112)]
    [DataRow(true, 7, 5, 3, 2, 112)]
    [DataRow(true, 53, 17, 70, 3, 8)]
    [DataRow(true, 131, 33, 129, 5, 112)]
    [DataRow(true, 131, 33, 129, 5, 10)]
    [DataRow(true, 200, 64, 64, 4, 16)]
    [DataRow(false, 1, 1, 1, 1, 112)]
    [DataRow(false, 7, 5, 3, 2, 112)]
    [DataRow(false, 53, 17, 70, 3, 8)]
    [DataRow(false, 131, 33, 129, 5, 112)]
    [DataRow(false, 131, 33, 129, 5, 10)]
    [DataRow(false, 200, 64, 17, 1, 16)]
    [DataRow(true, 899, 9, 70, 3, 4)]
    [DataRow(false, 899, 9, 70, 3, 4)]
    public void RandomDataMatchesNaiveDoubleReference(bool useVector512, int patches, int channels, int bankSize, int k, int depthBlock)
    {
        var rng = new Random(patches * 7919 + channels * 31 + bankSize);
        float[] bank = RandomValues(rng, bankSize * channels);
        float[] features = RandomValues(rng, patches * channels);

        var distances = new float[patches * k];
        new MemoryBankScorer(bank, bankSize, channels, useVector512, depthBlock, projectionRank: 0).NearestSquaredDistances(features, patches, k, distances);

        var all = new double[bankSize];
        for (int p = 0; p < patches; p++)
        {
            double featureNorm = 0;
            for (int c = 0; c < channels; c++)
                featureNorm += (double)features[p * channels + c] * features[p * channels + c];
            for (int m = 0; m < bankSize; m++)
            {
                double d = 0;
                for (int c = 0; c < channels; c++)
                {
                    double diff = (double)features[p * channels + c] - bank[m * channels + c];
                    d += diff * diff;
                }
                all[m] = d;
            }
            Array.Sort(all);
            for (int j = 0; j < k; j++)
            {
                double tolerance = 1e-5 * (featureNorm + channels) + 1e-6;
                Assert.AreEqual(all[j], distances[p * k + j], tolerance, $"patch {p}, neighbour {j}");
            }
        }
    }

    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void DistancesAreNeverNegative(bool useVector512)
    {
        // Features equal to bank entries with large norms: the expansion |f|² + |b|² − 2 f·b cancels to rounding noise.
        const int channels = 37, bankSize = 40;
        var rng = new Random(5);
        float[] bank = new float[bankSize * channels];
        for (int i = 0; i < bank.Length; i++)
            bank[i] = 1000f + (float)rng.NextDouble();
        var distances = new float[bankSize];
        new MemoryBankScorer(bank, bankSize, channels, useVector512, depthBlock: 16, projectionRank: 0).NearestSquaredDistances(bank, bankSize, 1, distances);
        foreach (float d in distances)
        {
            Assert.IsGreaterThanOrEqualTo(0f, d);
            Assert.IsLessThan(1f, d);   // rounding noise of values around 3.7e7, far below any real neighbour
        }
    }

    [TestMethod]
    [DataRow(true, 700, 40, 600, 6, 7)]
    [DataRow(false, 700, 40, 600, 6, 7)]
    [DataRow(true, 333, 24, 1000, 3, 4)]
    [DataRow(false, 333, 24, 1000, 3, 4)]
    [DataRow(true, 50, 9, 75, 9, 9)]
    public void ThePrunedScanKeepsTheFullScansEntriesAndDistancesBitForBit(bool useVector512, int patches, int channels, int bankSize, int k, int rank)
    {
        // A bank like CFA's: entries along a smooth curve (neighbouring positions alike) with noise, duplicated entries
        // (exact ties), and patches near the bank, on it, and far from it.
        var rng = new Random(patches + channels * 17 + bankSize);
        var directions = RandomValues(rng, 4 * channels);
        float[] bank = new float[bankSize * channels];
        for (int m = 0; m < bankSize; m++)
        {
            double t = 6.0 * m / bankSize;
            for (int c = 0; c < channels; c++)
                bank[m * channels + c] = (float)(3 * Math.Sin(t) * directions[c] + 3 * Math.Cos(t) * directions[channels + c]
                    + t * directions[2 * channels + c] + 0.2 * (rng.NextDouble() - 0.5));
        }
        for (int m = 10; m < bankSize; m += 37)
            Array.Copy(bank, (m - 5) * channels, bank, m * channels, channels);
        float[] features = new float[patches * channels];
        for (int p = 0; p < patches; p++)
        {
            int source = rng.Next(bankSize);
            double spread = p % 50 == 0 ? 20 : p % 7 == 0 ? 0 : 0.3;
            for (int c = 0; c < channels; c++)
                features[p * channels + c] = bank[source * channels + c] + (float)(spread * (rng.NextDouble() - 0.5));
        }

        var (fullDistances, fullEntries) = Nearest(new MemoryBankScorer(bank, bankSize, channels, useVector512, depthBlock: 16, projectionRank: 0));
        var pruned = new MemoryBankScorer(bank, bankSize, channels, useVector512, depthBlock: 16, projectionRank: rank);
        var (prunedDistances, prunedEntries) = Nearest(pruned);

        CollectionAssert.AreEqual(fullEntries, prunedEntries);
        CollectionAssert.AreEqual(fullDistances, prunedDistances);
        if (bankSize >= 500)
            Assert.IsLessThan(0.5, pruned.LastScanExactFraction, "the bound skips most of the bank");

        (float[], int[]) Nearest(MemoryBankScorer scorer)
        {
            var distances = new float[patches * k];
            var entries = new int[patches * k];
            scorer.Nearest(features, patches, k, distances, entries);
            return (distances, entries);
        }
    }

    [TestMethod]
    public void BankProjectionBoundsEveryDistanceFromBelowAndIsOrthonormal()
    {
        const int channels = 30, bankSize = 200;
        var rng = new Random(3);
        float[] bank = RandomValues(rng, bankSize * channels);
        var projection = BankProjection.Fit(bank, bankSize, channels, rank: 6);
        Assert.AreEqual(6, projection.Rank);
        var rx = new float[projection.Dimensions];
        var ry = new float[projection.Dimensions];
        for (int trial = 0; trial < 200; trial++)
        {
            float[] x = RandomValues(rng, channels), y = trial % 2 == 0 ? RandomValues(rng, channels) : bank.AsSpan((trial % bankSize) * channels, channels).ToArray();
            var norms = new double[1];
            projection.Reduce(x, 1, rx, norms);
            double xNorm = norms[0];
            projection.Reduce(y, 1, ry, norms);
            double distance = x.Zip(y, (a, b) => (double)(a - b) * (a - b)).Sum();
            double bound = rx.Zip(ry, (a, b) => (double)(a - b) * (a - b)).Sum();
            Assert.IsLessThanOrEqualTo(distance * (1 + 1e-6) + 1e-9, bound, $"trial {trial}");
            Assert.AreEqual(xNorm, rx.Sum(v => (double)v * v), 1e-5 * xNorm, "|R(x)|² = |x − μ|²");
        }

        // A bank spanning two directions gives at most two (the others are dropped, not filled with noise).
        float[] flat = new float[bankSize * channels];
        for (int m = 0; m < bankSize; m++)
            for (int c = 0; c < channels; c++)
                flat[m * channels + c] = (float)(Math.Sin(m) * (c + 1) + Math.Cos(m) * (c % 3));
        Assert.IsLessThanOrEqualTo(2, BankProjection.Fit(flat, bankSize, channels, rank: 6).Rank);
    }

    [TestMethod]
    public void InvalidArgumentsAreRejectedWithTheirNames()
    {
        float[] bank = new float[6];
        Assert.AreEqual("bank", Assert.ThrowsExactly<ArgumentException>(() => new MemoryBankScorer(bank, 4, 2)).ParamName);
        Assert.AreEqual("bankSize", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MemoryBankScorer(bank, 0, 2)).ParamName);
        Assert.AreEqual("channels", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MemoryBankScorer(bank, 3, 0)).ParamName);

        var scorer = new MemoryBankScorer(bank, 3, 2);
        Assert.AreEqual("k", Assert.ThrowsExactly<ArgumentOutOfRangeException>(
            () => scorer.NearestSquaredDistances(new float[2], 1, 4, new float[4])).ParamName);
        Assert.AreEqual("k", Assert.ThrowsExactly<ArgumentOutOfRangeException>(
            () => scorer.NearestSquaredDistances(new float[2], 1, 0, new float[4])).ParamName);
        Assert.AreEqual("features", Assert.ThrowsExactly<ArgumentException>(
            () => scorer.NearestSquaredDistances(new float[3], 2, 1, new float[2])).ParamName);
        Assert.AreEqual("distances", Assert.ThrowsExactly<ArgumentException>(
            () => scorer.NearestSquaredDistances(new float[4], 2, 2, new float[3])).ParamName);
    }

    private static float[] RandomValues(Random rng, int length)
    {
        var values = new float[length];
        for (int i = 0; i < values.Length; i++)
            values[i] = (float)(rng.NextDouble() * 2 - 1);
        return values;
    }
}
