using System.Runtime.InteropServices;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;
using SkiaSharp;

namespace Microsoft.ML.Anomaly.Vision.Tests.Images;

[TestClass]
public sealed class ImageTensorConverterTests
{
    private static float N(double byteValue, int channel)
    {
        double[] mean = [0.485, 0.456, 0.406];
        double[] std = [0.229, 0.224, 0.225];
        return (float)((byteValue / 255.0 - mean[channel]) / std[channel]);
    }

    private static MLImage FromRgba(int width, int height, MLPixelFormat format, params (byte R, byte G, byte B, byte A)[] pixels)
    {
        byte[] bytes = new byte[width * height * 4];
        for (int i = 0; i < pixels.Length; i++)
        {
            var p = pixels[i];
            bool bgra = format == MLPixelFormat.Bgra32;
            bytes[4 * i] = bgra ? p.B : p.R;
            bytes[4 * i + 1] = p.G;
            bytes[4 * i + 2] = bgra ? p.R : p.B;
            bytes[4 * i + 3] = p.A;
        }
        return MLImage.CreateFromPixels(width, height, format, bytes);
    }

    [TestMethod]
    [DataRow(MLPixelFormat.Rgba32)]
    [DataRow(MLPixelFormat.Bgra32)]
    public void Upscale2x2To4x4_MatchesHandComputedBilinear(MLPixelFormat format)
    {
        // R = [[0, 100], [200, 40]], G = 50, B = [[255, 0], [0, 255]].
        using MLImage image = FromRgba(2, 2, format, (0, 50, 255, 255), (100, 50, 0, 255), (200, 50, 0, 255), (40, 50, 255, 255));
        float[] t = new float[3 * 16];
        ImageTensorConverter.ToNormalizedChw(image, 4, 4, t);

        // Linear weights for 2 → 4 (half-pixel centres, edges repeated): 1 | .75 .25 | .25 .75 | 1.
        double[,] r =
        {
            { 0, 25, 75, 100 },
            { 50, 58.75, 76.25, 85 },
            { 150, 126.25, 78.75, 55 },
            { 200, 160, 80, 40 },
        };
        double[] bRow1 = [191.25, 159.375, 95.625, 63.75];
        for (int y = 0; y < 4; y++)
        {
            for (int x = 0; x < 4; x++)
            {
                Assert.AreEqual(N(r[y, x], 0), t[y * 4 + x], 1e-5f, $"R at ({y},{x})");
                Assert.AreEqual(N(50, 1), t[16 + y * 4 + x], 1e-5f, $"G at ({y},{x})");
            }
            Assert.AreEqual(N(bRow1[y], 2), t[32 + 4 + y], 1e-5f, $"B at (1,{y})");
        }
    }

    [TestMethod]
    public void Downscale4To2_UsesAntialiasedTriangleFilter()
    {
        // One row [0, 51, 102, 153]; scale 2 widens the filter: weights 3/7 3/7 1/7 and 1/7 3/7 3/7.
        using MLImage image = FromRgba(4, 1, MLPixelFormat.Rgba32, (0, 0, 0, 255), (51, 0, 0, 255), (102, 0, 0, 255), (153, 0, 0, 255));
        float[] t = new float[3 * 2];
        ImageTensorConverter.ToNormalizedChw(image, 1, 2, t);
        Assert.AreEqual(N(255.0 / 7, 0), t[0], 1e-5f);
        Assert.AreEqual(N(816.0 / 7, 0), t[1], 1e-5f);
    }

    [TestMethod]
    public void SameSize_NormalizesKnownPixelsWithImageNetStatistics()
    {
        using MLImage image = FromRgba(2, 1, MLPixelFormat.Bgra32, (255, 0, 128, 255), (0, 255, 0, 255));
        float[] t = new float[6];
        ImageTensorConverter.ToNormalizedChw(image, 1, 2, t);
        Assert.AreEqual((1f - 0.485f) / 0.229f, t[0], 1e-5f);
        Assert.AreEqual((0f - 0.485f) / 0.229f, t[1], 1e-5f);
        Assert.AreEqual((0f - 0.456f) / 0.224f, t[2], 1e-5f);
        Assert.AreEqual((1f - 0.456f) / 0.224f, t[3], 1e-5f);
        Assert.AreEqual((128f / 255f - 0.406f) / 0.225f, t[4], 1e-5f);
    }

    [TestMethod]
    public void Alpha_IsDropped()
    {
        using MLImage transparent = FromRgba(1, 1, MLPixelFormat.Rgba32, (10, 20, 30, 0));
        float[] t = new float[3];
        ImageTensorConverter.ToNormalizedChw(transparent, 1, 1, t);
        Assert.AreEqual(N(10, 0), t[0], 1e-5f);
        Assert.AreEqual(N(20, 1), t[1], 1e-5f);
        Assert.AreEqual(N(30, 2), t[2], 1e-5f);
    }

    [TestMethod]
    public void GreyPng_GivesThreeEqualChannelValues()
    {
        string path = Path.Combine(TestImages.NewDirectory(), "grey.png");
        using (var bitmap = new SKBitmap(new SKImageInfo(2, 1, SKColorType.Gray8, SKAlphaType.Opaque)))
        {
            Marshal.Copy(new byte[] { 77, 200 }, 0, bitmap.GetPixels(), 2);
            using SKData data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(path, data.ToArray());
        }

        using MLImage image = ImageTensorConverter.LoadImage(path);
        float[] t = new float[6];
        ImageTensorConverter.ToNormalizedChw(image, 1, 2, t);
        for (int c = 0; c < 3; c++)
        {
            Assert.AreEqual(N(77, c), t[2 * c], 1e-5f, $"channel {c}");
            Assert.AreEqual(N(200, c), t[2 * c + 1], 1e-5f, $"channel {c}");
        }
    }

    [TestMethod]
    public void LoadImage_MissingFile_NamesThePath()
    {
        string path = Path.Combine(TestImages.NewDirectory(), "nothing-here.png");
        var ex = Assert.ThrowsExactly<FileNotFoundException>(() => ImageTensorConverter.LoadImage(path));
        StringAssert.Contains(ex.Message, path);
    }

    [TestMethod]
    public void LoadImage_CorruptFile_NamesThePath()
    {
        string path = Path.Combine(TestImages.NewDirectory(), "corrupt.png");
        File.WriteAllBytes(path, [0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3, 4, 5]);
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => ImageTensorConverter.LoadImage(path));
        StringAssert.Contains(ex.Message, path);
    }

    [TestMethod]
    public void ToNormalizedChw_ShortDestination_Throws()
    {
        using MLImage image = TestImages.Uniform(2, 2, 1, 2, 3);
        var ex = Assert.ThrowsExactly<ArgumentException>(() => ImageTensorConverter.ToNormalizedChw(image, 2, 2, new float[11]));
        Assert.AreEqual("destination", ex.ParamName);
    }
}
