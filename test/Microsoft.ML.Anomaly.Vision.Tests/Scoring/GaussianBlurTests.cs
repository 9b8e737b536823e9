using Microsoft.ML.Anomaly.Vision;

namespace Microsoft.ML.Anomaly.Vision.Tests.Scoring;

[TestClass]
public sealed class GaussianBlurTests
{
    [TestMethod]
    [DataRow(4f, 33)]
    [DataRow(1f, 9)]
    [DataRow(2f, 17)]
    [DataRow(0.35f, 3)]
    public void KernelSizeIsTwiceFourSigmaRoundedPlusOne(float sigma, int size)
    {
        Assert.AreEqual(size, new GaussianBlur(sigma).KernelSize);
    }

    [TestMethod]
    public void KernelIsANormalisedGaussian()
    {
        var blur = new GaussianBlur(4f);
        ReadOnlySpan<float> kernel = blur.Kernel;
        double sum = 0;
        foreach (float v in kernel)
            sum += v;
        Assert.AreEqual(1.0, sum, 1e-6);
        // Neighbouring weights: ratio exp(−((x+1)² − x²)/(2σ²)); at the centre exp(−1/32).
        Assert.AreEqual(Math.Exp(-1.0 / 32), kernel[17] / kernel[16], 1e-6);
        Assert.AreEqual(Math.Exp(-256.0 / 32), kernel[0] / kernel[16], 1e-6);
        Assert.AreEqual(kernel[0], kernel[32]);
    }

    [TestMethod]
    public void BlurOfACentredDeltaIsTheTwoDimensionalKernel()
    {
        var blur = new GaussianBlur(4f);
        const int size = 41, centre = 20;
        var image = new float[size * size];
        image[centre * size + centre] = 1f;
        var output = new float[size * size];
        blur.Apply(image, size, size, output);

        ReadOnlySpan<float> kernel = blur.Kernel;
        double sum = 0;
        for (int y = 0; y < size; y++)
        {
            for (int x = 0; x < size; x++)
            {
                int dy = y - centre + 16, dx = x - centre + 16;
                float expected = dy is >= 0 and < 33 && dx is >= 0 and < 33 ? kernel[dy] * kernel[dx] : 0f;
                Assert.AreEqual(expected, output[y * size + x], 1e-8f, $"({y}, {x})");
                sum += output[y * size + x];
            }
        }
        Assert.AreEqual(1.0, sum, 1e-5);
    }

    [TestMethod]
    public void BorderIsReflectedWithoutRepeatingTheEdge()
    {
        // 3-tap kernel [a, 1 − 2a, a]; columns 0, 1, 2 in every row. Reflection maps column −1 to 1 and 3 to 1:
        // x=0 → a·1 + 0 + a·1 = 2a, x=1 → 1, x=2 → a + 2(1 − 2a) + a = 2 − 2a. (Replicate or zero padding would give a at x=0.)
        double e = Math.Exp(-1.0 / (2 * 0.35 * 0.35));
        double a = e / (1 + 2 * e);
        float[] image = { 0, 1, 2, 0, 1, 2, 0, 1, 2 };
        var output = new float[9];
        new GaussianBlur(0.35f).Apply(image, 3, 3, output);
        for (int y = 0; y < 3; y++)
        {
            Assert.AreEqual(2 * a, output[y * 3], 1e-6);
            Assert.AreEqual(1.0, output[y * 3 + 1], 1e-6);
            Assert.AreEqual(2 - 2 * a, output[y * 3 + 2], 1e-6);
        }
    }

    [TestMethod]
    [DataRow(1f, 20, 25)]
    [DataRow(2f, 19, 40)]
    public void RandomImageMatchesNaiveReflectPaddedConvolution(float sigma, int h, int w)
    {
        var rng = new Random(h * 100 + w);
        var image = new float[h * w];
        for (int i = 0; i < image.Length; i++)
            image[i] = (float)rng.NextDouble();
        var blur = new GaussianBlur(sigma);
        var output = new float[h * w];
        blur.Apply(image, h, w, output);

        int size = blur.KernelSize, radius = size / 2;
        var kernel2d = new double[size, size];
        double total = 0;
        for (int i = 0; i < size; i++)
            for (int j = 0; j < size; j++)
                total += kernel2d[i, j] = Math.Exp(-((i - radius) * (i - radius) + (j - radius) * (j - radius)) / (2.0 * sigma * sigma));

        static int ReflectOnce(int i, int n) => i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                double acc = 0;
                for (int i = 0; i < size; i++)
                    for (int j = 0; j < size; j++)
                        acc += kernel2d[i, j] / total * image[ReflectOnce(y + i - radius, h) * w + ReflectOnce(x + j - radius, w)];
                Assert.AreEqual(acc, output[y * w + x], 1e-5, $"({y}, {x})");
            }
        }
    }

    [TestMethod]
    public void BlurMayRunInPlaceAndKeepsConstantsConstant()
    {
        var image = new float[12 * 7];
        Array.Fill(image, 3.5f);
        new GaussianBlur(4f).Apply(image, 12, 7, image);
        foreach (float v in image)
            Assert.AreEqual(3.5f, v, 1e-5f);
    }

    [TestMethod]
    public void InvalidArgumentsAreRejected()
    {
        Assert.AreEqual("sigma", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new GaussianBlur(0f)).ParamName);
        Assert.AreEqual("dst", Assert.ThrowsExactly<ArgumentException>(
            () => new GaussianBlur().Apply(new float[4], 2, 2, new float[3])).ParamName);
    }
}
