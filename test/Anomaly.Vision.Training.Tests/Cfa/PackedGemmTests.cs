using Anomaly.Vision.Training;

namespace Anomaly.Vision.Training.Tests.Cfa;

[TestClass]
public sealed class PackedGemmTests
{
    [TestMethod]
    [DataRow(true, false, DisplayName = "Vector512, A and B row-major")]
    [DataRow(false, false, DisplayName = "Vector256, A and B row-major")]
    [DataRow(true, true, DisplayName = "Vector512, A and B transposed")]
    [DataRow(false, true, DisplayName = "Vector256, A and B transposed")]
    public void ProductMatchesDoublePrecisionAndAccumulates(bool useVector512, bool transposed)
    {
        // Shapes that fill no tile exactly: 13 rows (6 + 6 + 1), 70 columns (64 + 6, 16·4 + 6), depth 9.
        const int m = 13, n = 70, k = 9;
        var random = new Random(5);
        float[] a = Enumerable.Range(0, m * k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] b = Enumerable.Range(0, k * n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        // A(i, j) and B(j, l) through strides: row-major, or stored transposed.
        int aRow = transposed ? 1 : k, aColumn = transposed ? m : 1;
        int bRow = transposed ? 1 : n, bColumn = transposed ? k : 1;
        var c = new float[m * n];
        PackedGemm.Multiply(m, n, k, a, aRow, aColumn, b, bRow, bColumn, c, accumulate: false, useVector512);
        var twice = (float[])c.Clone();
        PackedGemm.Multiply(m, n, k, a, aRow, aColumn, b, bRow, bColumn, twice, accumulate: true, useVector512);
        for (int i = 0; i < m; i++)
        {
            for (int l = 0; l < n; l++)
            {
                double expected = 0;
                for (int j = 0; j < k; j++)
                    expected += (double)a[i * aRow + j * aColumn] * b[j * bRow + l * bColumn];
                Assert.AreEqual(expected, c[i * n + l], 1e-5, $"C({i}, {l})");
                Assert.AreEqual(2 * expected, twice[i * n + l], 2e-5, $"accumulated C({i}, {l})");
            }
        }
    }

    [TestMethod]
    public void TooShortOperandsAreRejectedByName()
    {
        var c = new float[4];
        var ex = Assert.ThrowsExactly<ArgumentException>(() => PackedGemm.Multiply(2, 2, 3, new float[5], 3, 1, new float[6], 2, 1, c, accumulate: false));
        Assert.AreEqual("a", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => PackedGemm.Multiply(2, 2, 3, new float[6], 3, 1, new float[5], 2, 1, c, accumulate: false));
        Assert.AreEqual("b", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => PackedGemm.Multiply(2, 2, 3, new float[6], 3, 1, new float[6], 2, 1, new float[3], accumulate: false));
        Assert.AreEqual("c", ex.ParamName);
    }
}
