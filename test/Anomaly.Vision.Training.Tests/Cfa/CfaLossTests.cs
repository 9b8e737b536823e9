using Anomaly.Vision.Training;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training.Tests.Cfa;

[TestClass]
public sealed class CfaLossTests
{
    // Two patches (1×2 grid), six bank entries along dimension 1: [B=1, M=6, H=1, W=2].
    // Patch 0 distances 0.9 0.1 0.3 5 0.2 7 → three smallest 0.1 0.2 0.3.
    // Patch 1 distances 2 4 3 1.5 9 6      → three smallest 1.5 2 3.
    private static Tensor Distances()
    {
        float[] patch0 = { 0.9f, 0.1f, 0.3f, 5f, 0.2f, 7f };
        float[] patch1 = { 2f, 4f, 3f, 1.5f, 9f, 6f };
        var values = new float[12];
        for (int m = 0; m < 6; m++)
        {
            values[m * 2] = patch0[m];
            values[m * 2 + 1] = patch1[m];
        }
        return CfaTensors.FromArray(values, new long[] { 1, 6, 1, 2 });
    }

    [TestMethod]
    public void LossMatchesHandComputationWithTwoNeighboursAndOneHardNegative()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        // radius 1 → r² = 1. k = 3.
        // attraction on ranks 0..1: patch0 max(0, 0.1−1), max(0, 0.2−1) = 0, 0; patch1 max(0, 1.5−1), max(0, 2−1) = 0.5, 1 → mean 1.5/4 = 0.375
        // repulsion on ranks 1..2: patch0 max(0, 1−0.2−0.1), max(0, 1−0.3−0.1) = 0.7, 0.6; patch1 0, 0 → mean 1.3/4 = 0.325
        // loss = (0.375 + 0.325) × 1000 = 700
        var loss = CfaLoss.Compute(Distances(), 1, nearestNeighbors: 2, hardNegatives: 1, radius: 1f);
        Assert.AreEqual(700f, loss.item<float>(), 1e-3f);
    }

    [TestMethod]
    public void RepulsionStartsAtTheHardNegativeRankNotAtTheNeighbourCount()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        // nearest 1, hard negatives 2 → k = 3; attraction on rank 0, repulsion on ranks 2.. (one value).
        // attraction: patch0 max(0, 0.1−1) = 0; patch1 max(0, 1.5−1) = 0.5 → mean 0.25
        // repulsion: patch0 max(0, 1−0.3−0.1) = 0.6; patch1 max(0, 1−3−0.1) = 0 → mean 0.3
        // loss = 550 (slicing from rank 1 instead would give a repulsion mean of (0.7+0.6)/4 and 575)
        var loss = CfaLoss.Compute(Distances(), 1, nearestNeighbors: 1, hardNegatives: 2, radius: 1f);
        Assert.AreEqual(550f, loss.item<float>(), 1e-3f);
    }

    [TestMethod]
    public void TooFewBankEntriesForKIsRejected()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var e = Assert.ThrowsExactly<ArgumentException>(() => CfaLoss.Compute(Distances(), 1, 4, 3, 1f));
        StringAssert.Contains(e.Message, "6 entries");
    }
}
