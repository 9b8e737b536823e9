using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests;

[TestClass]
public sealed class SyntheticPrimitivesTests
{
    [TestMethod]
    public void SplitMixMatchesReferenceSequence()
    {
        // SplitMix64 seeded with 0: the reference implementation's first two outputs.
        var rng = new DeterministicRandom(0);
        Assert.AreEqual(0xE220A8397B1DCDAFUL, rng.NextUInt64());
        Assert.AreEqual(0x6E789E6AA1B965F4UL, rng.NextUInt64());
    }

    [TestMethod]
    public void SineAgreesWithMathSin()
    {
        foreach (double x in new[] { 0.0, 0.5, 1.0, Math.PI / 2, 2.0, Math.PI, 4.0, -1.3, -3.0, 7.5, 100.25, 3.927 + 0.45 })
        {
            Assert.AreEqual(Math.Sin(x), DeterministicMath.Sin(x), 1e-9, $"sin({x})");
            Assert.AreEqual(Math.Cos(x), DeterministicMath.Cos(x), 1e-9, $"cos({x})");
        }
    }

    [TestMethod]
    public void PngEncoderWritesWhatMLImageReadsBack()
    {
        using var tmp = new TempFolder();
        // 3x2 RGB: red, green, blue / white, black, grey 128.
        byte[] rgb = { 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 128, 128, 128 };
        string path = tmp.Combine("rgb.png");
        PngEncoder.Write(path, rgb, 3, 2, 3);
        using (MLImage image = MLImage.CreateFromFile(path))
        {
            Assert.AreEqual(3, image.Width);
            Assert.AreEqual(2, image.Height);
            bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
            ReadOnlySpan<byte> px = image.Pixels;
            // pixel 2 (blue) and pixel 5 (grey)
            Assert.AreEqual(255, px[(2 * 4) + (bgra ? 0 : 2)]);
            Assert.AreEqual(0, px[(2 * 4) + (bgra ? 2 : 0)]);
            Assert.AreEqual(128, px[(5 * 4) + 1]);
            Assert.AreEqual(255, px[(0 * 4) + (bgra ? 2 : 0)]);
        }

        byte[] grey = { 0, 255, 255, 0, 0, 255 };
        string maskPath = tmp.Combine("mask.png");
        PngEncoder.Write(maskPath, grey, 2, 3, 1);
        using (MLImage mask = MLImage.CreateFromFile(maskPath))
        {
            Assert.AreEqual(2, mask.Width);
            Assert.AreEqual(3, mask.Height);
            ReadOnlySpan<byte> px = mask.Pixels;
            for (int i = 0; i < 6; i++)
            {
                Assert.AreEqual(grey[i], px[(i * 4) + 1], $"pixel {i}");
            }
        }

        // Size is checked.
        Assert.ThrowsExactly<ArgumentException>(() => PngEncoder.Write(tmp.Combine("bad.png"), grey, 3, 3, 1));
    }
}
