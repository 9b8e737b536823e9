using Anomaly.Vision.Training;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training.Tests.Cfa;

[TestClass]
public sealed class MemoryBankTests
{
    [TestMethod]
    public void BankIsTheMeanOfBatchMeansOfTheUntrainedDescriptorPatchMajor()
    {
        var maps = CfaTestData.Maps(6, seed: 1);
        // No epochs: the model keeps the initial descriptor that built the bank.
        var model = CfaTrainer.Train(CfaTestData.Source(maps), CfaTestData.Options(epochs: 0, batchSize: 4));
        int patches = 64, d = model.DescriptorChannels;
        Assert.AreEqual(12, d);
        Assert.AreEqual(patches, model.BankSize);

        var perImage = new float[6][];
        for (int i = 0; i < 6; i++)
        {
            perImage[i] = new float[patches * d];
            model.Describe(new[] { maps[i][0], maps[i][1] }, 1, perImage[i]);
        }
        // Batches {0,1,2,3} and {4,5}: bank = (mean of 0..3 + mean of 4..5) / 2, which weighs images 4 and 5 twice as much.
        var bank = model.MemoryBank.ToArray();
        double maxPlainMeanGap = 0;
        for (int j = 0; j < patches * d; j++)
        {
            double first = (perImage[0][j] + perImage[1][j] + perImage[2][j] + perImage[3][j]) / 4;
            double second = (perImage[4][j] + perImage[5][j]) / 2;
            Assert.AreEqual((first + second) / 2, bank[j], 1e-5, $"value {j}");
            double plain = Enumerable.Range(0, 6).Average(i => perImage[i][j]);
            maxPlainMeanGap = Math.Max(maxPlainMeanGap, Math.Abs(plain - bank[j]));
        }
        Assert.IsGreaterThan(1e-3, maxPlainMeanGap, "the bank is the mean of batch means, not the plain mean");
    }

    [TestMethod]
    public void SquaredDistancesMatchHandComputation()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        // Two channels, a 1×2 grid: patch 0 = (1, 2), patch 1 = (−1, 0). Bank: (0, 0), (1, 1), (3, −1).
        var features = CfaTensors.FromArray(new float[] { 1, -1, 2, 0 }, new long[] { 1, 2, 1, 2 });
        var bank = CfaTensors.FromArray(new float[] { 0, 0, 1, 1, 3, -1 }, new long[] { 3, 2 });
        var d = CfaTensors.ToArray(MemoryBank.SquaredDistances(features, bank.reshape(3, 2, 1, 1), MemoryBank.SquaredNorms(bank)));
        // layout [1, 3, 1, 2]: entry-major, then patch
        float[] expected = { 5, 1, 1, 5, 13, 17 };
        for (int i = 0; i < 6; i++)
            Assert.AreEqual(expected[i], d[i], 1e-5f, $"index {i}");
    }
}
