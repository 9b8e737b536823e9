using System.Security.Cryptography;

namespace Microsoft.ML.Anomaly.Vision.Tests.Sweeps;

[TestClass]
public sealed class SyntheticAnomalyGeneratorTests
{
    private const int Height = 48;
    private const int Width = 72;

    /// <summary>A good image with structure in both directions (not square, so a transposed index would show).</summary>
    private static byte[] GoodImage()
    {
        var rgb = new byte[Height * Width * 3];
        for (int y = 0; y < Height; y++)
            for (int x = 0; x < Width; x++)
            {
                int k = ((y * Width) + x) * 3;
                rgb[k] = (byte)(60 + (2 * x));
                rgb[k + 1] = (byte)(90 + (3 * y));
                rgb[k + 2] = (byte)((x * y) % 200);
            }
        return rgb;
    }

    [TestMethod]
    public void TheSameSeedGivesTheSameBytesAndAnotherSeedOtherBytes()
    {
        byte[] image = GoodImage();
        SyntheticAnomaly first = SyntheticAnomalyGenerator.Apply(image, Height, Width, seed: 11);
        SyntheticAnomaly again = SyntheticAnomalyGenerator.Apply(image, Height, Width, seed: 11);
        SyntheticAnomaly other = SyntheticAnomalyGenerator.Apply(image, Height, Width, seed: 12);
        CollectionAssert.AreEqual(first.Rgb, again.Rgb);
        CollectionAssert.AreEqual(first.Mask, again.Mask);
        Assert.AreEqual(first.Blend, again.Blend);
        Assert.IsFalse(first.Mask.AsSpan().SequenceEqual(other.Mask), "another seed must draw another defect");
    }

    [TestMethod]
    public void TheOutputIsPinnedSoThatItIsByteIdenticalAcrossMachines()
    {
        // The generator uses integer hashing and a polynomial sine only; this digest was taken once and must never change
        // unless the generator changes on purpose (then every synthetic validation split changes too).
        SyntheticAnomaly anomaly = SyntheticAnomalyGenerator.Apply(GoodImage(), Height, Width, seed: 3);
        string digest = Convert.ToHexString(SHA256.HashData([.. anomaly.Rgb, .. anomaly.Mask]));
        Assert.AreEqual(PinnedDigest, digest);
    }

    [TestMethod]
    public void MasksCoverExactlyTheChangedPixelsAndEveryDefectIsLargeEnough()
    {
        byte[] image = GoodImage();
        var kinds = new HashSet<SyntheticAnomalyKind>();
        var options = new SyntheticAnomalyOptions();
        for (int seed = 0; seed < 40; seed++)
        {
            SyntheticAnomaly anomaly = SyntheticAnomalyGenerator.Apply(image, Height, Width, seed, options);
            kinds.Add(anomaly.Kind);
            Assert.AreEqual(Height * Width, anomaly.Mask.Length);
            int changed = 0;
            for (int i = 0; i < Height * Width; i++)
            {
                bool differs = anomaly.Rgb[i * 3] != image[i * 3] || anomaly.Rgb[(i * 3) + 1] != image[(i * 3) + 1] || anomaly.Rgb[(i * 3) + 2] != image[(i * 3) + 2];
                Assert.AreEqual(differs ? (byte)255 : (byte)0, anomaly.Mask[i], $"seed {seed}, pixel {i}: the mask must be 255 exactly where the image changed");
                changed += differs ? 1 : 0;
            }
            Assert.IsGreaterThanOrEqualTo((int)Math.Ceiling(options.MinAreaFraction * Height * Width), changed, $"seed {seed}");
            Assert.IsLessThan(Height * Width, changed, $"seed {seed}: a defect is a region, not the whole image");
            Assert.IsTrue(anomaly.Blend >= options.MinBlend && anomaly.Blend <= options.MaxBlend, $"seed {seed}: blend {anomaly.Blend}");
        }
        Assert.HasCount(2, kinds, "both foreign textures and distorted content must occur");
    }

    [TestMethod]
    public void BadInputIsRejectedWithTheParameterNamed()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => SyntheticAnomalyGenerator.Apply(new byte[10], Height, Width, 0));
        Assert.AreEqual("rgb", e.ParamName);
        var o = Assert.ThrowsExactly<ArgumentException>(() => SyntheticAnomalyGenerator.Apply(GoodImage(), Height, Width, 0, new SyntheticAnomalyOptions { MinBlend = 0 }));
        Assert.AreEqual("options", o.ParamName);
    }

    private const string PinnedDigest = "5AD3737FE9DA58DCBDA28AB280BA53408392F43083CAAEE4F224AC2E843ACF2E";
}
