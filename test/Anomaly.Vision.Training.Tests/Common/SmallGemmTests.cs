using Anomaly.Vision.Training;

namespace Anomaly.Vision.Training.Tests.Common;

[TestClass]
public sealed class SmallGemmTests
{
    [TestMethod]
    [DataRow(true, false, DisplayName = "Vector512, A row-major")]
    [DataRow(false, false, DisplayName = "Vector256, A row-major")]
    [DataRow(true, true, DisplayName = "Vector512, A transposed")]
    [DataRow(false, true, DisplayName = "Vector256, A transposed")]
    public void ProductMatchesDoublePrecisionWithStridesAndAccumulates(bool useVector512, bool transposed)
    {
        // 13 rows (6 + 6 + 1), 83 columns (64 + 16 + 3, or 5·16 + 3), depth 9; B and C rows padded to other strides.
        const int m = 13, n = 83, k = 9, bRow = 90, cRow = 87;
        var random = new Random(5);
        float[] a = Enumerable.Range(0, m * k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] b = Enumerable.Range(0, k * bRow).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        int aRow = transposed ? 1 : k, aColumn = transposed ? m : 1;
        const float Sentinel = 12345f;
        var c = Enumerable.Repeat(Sentinel, m * cRow).ToArray();
        SmallGemm.Multiply(m, n, k, a, aRow, aColumn, b, bRow, c, cRow, accumulate: false, useVector512);
        var twice = (float[])c.Clone();
        SmallGemm.Multiply(m, n, k, a, aRow, aColumn, b, bRow, twice, cRow, accumulate: true, useVector512);
        for (int i = 0; i < m; i++)
        {
            for (int l = 0; l < cRow; l++)
            {
                if (l >= n)
                {
                    Assert.AreEqual(Sentinel, c[i * cRow + l], $"C({i}, {l}) lies past the columns and must stay untouched");
                    continue;
                }
                double expected = 0;
                for (int j = 0; j < k; j++)
                    expected += (double)a[i * aRow + j * aColumn] * b[j * bRow + l];
                Assert.AreEqual(expected, c[i * cRow + l], 1e-5, $"C({i}, {l})");
                Assert.AreEqual(2 * expected, twice[i * cRow + l], 2e-5, $"accumulated C({i}, {l})");
            }
        }
    }

    [TestMethod]
    public void TooShortOperandsAreRejectedByName()
    {
        var ex = Assert.ThrowsExactly<ArgumentException>(() => SmallGemm.Multiply(2, 2, 3, new float[5], 3, 1, new float[6], 2, new float[4], 2, false));
        Assert.AreEqual("a", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => SmallGemm.Multiply(2, 2, 3, new float[6], 3, 1, new float[5], 2, new float[4], 2, false));
        Assert.AreEqual("b", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => SmallGemm.Multiply(2, 2, 3, new float[6], 3, 1, new float[6], 2, new float[3], 2, false));
        Assert.AreEqual("c", ex.ParamName);
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => SmallGemm.Multiply(0, 2, 3, new float[6], 3, 1, new float[6], 2, new float[4], 2, false));
    }
}
