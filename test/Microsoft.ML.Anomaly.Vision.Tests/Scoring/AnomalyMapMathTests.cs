using Microsoft.ML.Anomaly.Vision;

namespace Microsoft.ML.Anomaly.Vision.Tests.Scoring;

[TestClass]
public sealed class AnomalyMapMathTests
{
    [TestMethod]
    public void SoftminNearestMatchesHandValues()
    {
        float[] squared =
        {
            1, 4, 9,        // sqrt → 1, 2, 3: weight of nearest 1/(1 + e^-1 + e^-2) = 0.6652410, score × 1
            0, 0, 0,        // all equal at 0: score 0
            4, 4, 4,        // all equal at 2: weight 1/3, score 2/3
            9, 1, 4,        // unordered row: the nearest is the minimum → same as the first row
            16, 16, 100,    // sqrt → 4, 4, 10: weight 1/(2 + e^-6) = 0.4993813, score × 4 = 1.9975250
        };
        var scores = new float[5];
        AnomalyMapMath.SoftminNearest(squared, 5, 3, scores);

        Assert.AreEqual(0.6652410, scores[0], 1e-6);
        Assert.AreEqual(0.0, scores[1], 1e-7);
        Assert.AreEqual(2.0 / 3.0, scores[2], 1e-6);
        Assert.AreEqual(0.6652410, scores[3], 1e-6);
        Assert.AreEqual(1.9975250, scores[4], 1e-6);
    }

    [TestMethod]
    public void SoftminNearestWithOneNeighbourIsTheDistance()
    {
        var scores = new float[2];
        AnomalyMapMath.SoftminNearest(new float[] { 6.25f, 0f }, 2, 1, scores);
        CollectionAssert.AreEqual(new float[] { 2.5f, 0f }, scores);
    }

    [TestMethod]
    public void BilinearUpscaleWithoutAlignedCornersMatchesHandValues()
    {
        // torch: source = (dst + 0.5)/2 − 0.5 clamped at 0 → 0, 0.25, 0.75, 1 (last clamped to the edge).
        float[] src = { 0, 1, 2, 3 };
        var dst = new float[16];
        AnomalyMapMath.BilinearResize(src, 2, 2, dst, 4, 4, alignCorners: false);
        float[] expected =
        {
            0.0f, 0.25f, 0.75f, 1.0f,
            0.5f, 0.75f, 1.25f, 1.5f,
            1.5f, 1.75f, 2.25f, 2.5f,
            2.0f, 2.25f, 2.75f, 3.0f,
        };
        AssertClose(expected, dst, 1e-6f);
    }

    [TestMethod]
    public void BilinearUpscaleWithAlignedCornersMatchesHandValues()
    {
        // source = dst · (2 − 1)/(4 − 1) → 0, 1/3, 2/3, 1; value = 2·y + x.
        float[] src = { 0, 1, 2, 3 };
        var dst = new float[16];
        AnomalyMapMath.BilinearResize(src, 2, 2, dst, 4, 4, alignCorners: true);
        var expected = new float[16];
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++)
                expected[y * 4 + x] = 2f * y / 3f + x / 3f;
        AssertClose(expected, dst, 1e-6f);
    }

    [TestMethod]
    public void BilinearDownscaleAveragesPairsAndNonSquareShapesWork()
    {
        // 1×4 → 1×2 without aligned corners: source x = 2·dst + 0.5 → mean of pixel pairs.
        var dst = new float[2];
        AnomalyMapMath.BilinearResize(new float[] { 1, 3, 10, 20 }, 1, 4, dst, 1, 2, alignCorners: false);
        AssertClose(new float[] { 2f, 15f }, dst, 1e-6f);

        // 1×3 → 2×5 with aligned corners: every row equals the linear interpolation 0, 0.5, 1, 1.5, 2 of [0, 1, 2] scaled.
        var dst2 = new float[10];
        AnomalyMapMath.BilinearResize(new float[] { 0, 2, 4 }, 1, 3, dst2, 2, 5, alignCorners: true);
        AssertClose(new float[] { 0, 1, 2, 3, 4, 0, 1, 2, 3, 4 }, dst2, 1e-6f);
    }

    [TestMethod]
    public void BilinearRejectsShortBuffers()
    {
        Assert.AreEqual("src", Assert.ThrowsExactly<ArgumentException>(
            () => AnomalyMapMath.BilinearResize(new float[3], 2, 2, new float[16], 4, 4, false)).ParamName);
        Assert.AreEqual("dst", Assert.ThrowsExactly<ArgumentException>(
            () => AnomalyMapMath.BilinearResize(new float[4], 2, 2, new float[15], 4, 4, false)).ParamName);
        Assert.AreEqual("scores", Assert.ThrowsExactly<ArgumentException>(
            () => AnomalyMapMath.SoftminNearest(new float[6], 2, 3, new float[1])).ParamName);
    }

    private static void AssertClose(float[] expected, float[] actual, float tolerance)
    {
        Assert.HasCount(expected.Length, actual);
        for (int i = 0; i < expected.Length; i++)
            Assert.AreEqual(expected[i], actual[i], tolerance, $"index {i}");
    }
}
