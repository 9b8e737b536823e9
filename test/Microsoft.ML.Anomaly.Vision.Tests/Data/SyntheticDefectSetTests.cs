using System.Diagnostics;
using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests;

[TestClass]
public sealed class SyntheticDefectSetTests
{
    public TestContext TestContext { get; set; } = null!;

    private static SyntheticDefectSetOptions Small(int seed = 7) => new()
    {
        Seed = seed,
        ImageSize = 48,
        TrainCount = 5,
        TestGoodCount = 3,
        TestDefectCount = 6,
    };

    /// <summary>Decodes an image file with ML.NET's image type into RGB bytes.</summary>
    private static byte[] ReadRgb(string path, out int width, out int height)
    {
        using MLImage image = MLImage.CreateFromFile(path);
        width = image.Width;
        height = image.Height;
        ReadOnlySpan<byte> pixels = image.Pixels;
        Assert.AreEqual(32, image.BitsPerPixel);
        bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
        var rgb = new byte[width * height * 3];
        for (int i = 0; i < width * height; i++)
        {
            rgb[(i * 3) + 0] = pixels[(i * 4) + (bgra ? 2 : 0)];
            rgb[(i * 3) + 1] = pixels[(i * 4) + 1];
            rgb[(i * 3) + 2] = pixels[(i * 4) + (bgra ? 0 : 2)];
        }

        return rgb;
    }

    [TestMethod]
    public void LoaderReadsGeneratedSetWithExactCounts()
    {
        using var tmp = new TempFolder();
        SyntheticDefectSetInfo info = SyntheticDefectSet.Generate(tmp.Path, Small());
        Assert.AreEqual(tmp.Path, info.Root);
        Assert.AreEqual(48, info.ImageSize);
        CollectionAssert.AreEqual(new[] { "weave", "washer" }, info.Categories.Select(c => c.Name).ToArray());
        Assert.AreEqual(SyntheticCategoryKind.Texture, info.Categories[0].Kind);
        Assert.AreEqual(SyntheticCategoryKind.Object, info.Categories[1].Kind);

        var ml = new MLContext(seed: 0);
        foreach (SyntheticCategoryInfo category in info.Categories)
        {
            Assert.AreEqual(tmp.Combine(category.Name), category.Path);
            Assert.AreEqual(5, category.TrainCount);
            Assert.AreEqual(3, category.TestGoodCount);
            Assert.AreEqual(6, category.TestDefectCount);
            // 6 defects over 4 types: the first two types take one extra.
            CollectionAssert.AreEquivalent(
                new Dictionary<string, int> { ["scratch"] = 2, ["hole"] = 2, ["color"] = 1, ["missing"] = 1 }.ToList(),
                category.DefectCounts.ToList());

            var train = ml.Data.CreateEnumerable<MvtecImage>(ml.Data.LoadMvtecAd(info.Root, category.Name, MvtecSplit.Train), false).ToList();
            CollectionAssert.AreEqual(
                new[] { "000.png", "001.png", "002.png", "003.png", "004.png" },
                train.Select(r => Path.GetFileName(r.ImagePath)).ToArray());
            Assert.IsTrue(train.All(r => File.Exists(r.ImagePath) && !r.Label && r.DefectType == "good" && r.MaskPath == ""));

            var test = ml.Data.CreateEnumerable<MvtecImage>(ml.Data.LoadMvtecAd(info.Root, category.Name, MvtecSplit.Test), false).ToList();
            CollectionAssert.AreEqual(
                new[] { "color/000", "good/000", "good/001", "good/002", "hole/000", "hole/001", "missing/000", "scratch/000", "scratch/001" },
                test.Select(r => r.DefectType + "/" + Path.GetFileNameWithoutExtension(r.ImagePath)).ToArray());
            foreach (MvtecImage row in test)
            {
                Assert.IsTrue(File.Exists(row.ImagePath), row.ImagePath);
                Assert.AreEqual(row.DefectType != "good", row.Label);
                if (row.Label)
                {
                    Assert.AreEqual(
                        Path.Combine(category.Path, "ground_truth", row.DefectType, Path.GetFileNameWithoutExtension(row.ImagePath) + "_mask.png"),
                        row.MaskPath);
                    Assert.IsTrue(File.Exists(row.MaskPath), row.MaskPath);
                }
                else
                {
                    Assert.AreEqual("", row.MaskPath);
                }
            }
        }
    }

    [TestMethod]
    public void MasksCoverExactlyThePixelsTheDefectChanged()
    {
        using var tmp = new TempFolder();
        SyntheticDefectSetOptions options = new() { Seed = 3, ImageSize = 64, TrainCount = 1, TestGoodCount = 1, TestDefectCount = 24 };
        SyntheticDefectSetInfo info = SyntheticDefectSet.Generate(tmp.Path, options);
        int checkedImages = 0;
        foreach (SyntheticCategoryInfo category in info.Categories)
        {
            foreach (MvtecImage row in MvtecAd.ReadImages(info.Root, category.Name, MvtecSplit.Test).Where(r => r.Label))
            {
                int index = int.Parse(Path.GetFileNameWithoutExtension(row.ImagePath), System.Globalization.CultureInfo.InvariantCulture);
                byte[] written = ReadRgb(row.ImagePath, out int w, out int h);
                Assert.AreEqual(64, w);
                Assert.AreEqual(64, h);
                byte[] maskRgb = ReadRgb(row.MaskPath, out int mw, out int mh);
                Assert.AreEqual(64, mw);
                Assert.AreEqual(64, mh);

                SyntheticSample defective = SyntheticDefectSet.RenderSample(options, category.Name, MvtecSplit.Test, row.DefectType, index, withDefect: true);
                SyntheticSample clean = SyntheticDefectSet.RenderSample(options, category.Name, MvtecSplit.Test, row.DefectType, index, withDefect: false);
                Assert.IsNull(clean.Mask);
                CollectionAssert.AreEqual(defective.Rgb, written, $"{row.ImagePath} decodes to the rendered pixels");

                int inside = 0;
                for (int p = 0; p < 64 * 64; p++)
                {
                    byte m = maskRgb[p * 3];
                    Assert.IsTrue(m is 0 or 255 && maskRgb[(p * 3) + 1] == m && maskRgb[(p * 3) + 2] == m, $"mask value {m} at {p} in {row.MaskPath}");
                    Assert.AreEqual(defective.Mask![p], m);
                    bool changed = written[p * 3] != clean.Rgb[p * 3] || written[(p * 3) + 1] != clean.Rgb[(p * 3) + 1] || written[(p * 3) + 2] != clean.Rgb[(p * 3) + 2];
                    Assert.AreEqual(m == 255, changed, $"pixel {p % 64},{p / 64} of {row.ImagePath}: mask {m}, changed {changed}");
                    inside += m == 255 ? 1 : 0;
                }

                Assert.IsGreaterThanOrEqualTo(4, inside, row.MaskPath);
                Assert.IsLessThan(64 * 64 / 2, inside, row.MaskPath);
                checkedImages++;
            }
        }

        Assert.AreEqual(48, checkedImages);
    }

    [TestMethod]
    public void SameSeedGivesSameBytesAndAnotherSeedDoesNot()
    {
        using var a = new TempFolder();
        using var b = new TempFolder();
        using var c = new TempFolder();
        SyntheticDefectSet.Generate(a.Path, Small(seed: 11));
        SyntheticDefectSet.Generate(b.Path, Small(seed: 11));
        SyntheticDefectSet.Generate(c.Path, Small(seed: 12));
        string[] files = Directory.GetFiles(a.Path, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(a.Path, f)).Order(StringComparer.Ordinal).ToArray();
        CollectionAssert.AreEqual(files, Directory.GetFiles(b.Path, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(b.Path, f)).Order(StringComparer.Ordinal).ToArray());
        Assert.AreEqual(2 * (5 + 3 + 6 + 6), files.Length);
        int differentWithOtherSeed = 0;
        foreach (string file in files)
        {
            byte[] bytes = File.ReadAllBytes(Path.Combine(a.Path, file));
            CollectionAssert.AreEqual(bytes, File.ReadAllBytes(Path.Combine(b.Path, file)), file);
            differentWithOtherSeed += bytes.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(c.Path, file))) ? 0 : 1;
        }

        Assert.AreEqual(files.Length, differentWithOtherSeed);
    }

    [TestMethod]
    public void RenderingIsPinnedAcrossRuntimes()
    {
        // FNV-1a of every pixel of two images, recorded from this generator: they change only if its output changes,
        // on any runtime or processor (own random generator, own sine, IEEE-exact arithmetic only).
        var options = new SyntheticDefectSetOptions { Seed = 5, ImageSize = 32 };
        SyntheticSample weave = SyntheticDefectSet.RenderSample(options, "weave", MvtecSplit.Test, "scratch", 1, withDefect: true);
        SyntheticSample washer = SyntheticDefectSet.RenderSample(options, "washer", MvtecSplit.Train, "good", 0, withDefect: true);
        TestContext.WriteLine($"weave {Fnv(weave.Rgb):X16} mask {Fnv(weave.Mask!):X16} washer {Fnv(washer.Rgb):X16}");
        Assert.AreEqual(0xDC46DB7C2EB0120DUL, Fnv(weave.Rgb));
        Assert.AreEqual(0x03CC6E8013E06BA5UL, Fnv(weave.Mask!));
        Assert.AreEqual(0xDD19EA9F52E4C8ABUL, Fnv(washer.Rgb));
    }

    private static ulong Fnv(byte[] data)
    {
        ulong h = 0xCBF29CE484222325UL;
        foreach (byte b in data)
        {
            h = (h ^ b) * 0x100000001B3UL;
        }

        return h;
    }

    [TestMethod]
    public void DefaultOptionsWriteTheFullSet()
    {
        using var tmp = new TempFolder();
        var watch = Stopwatch.StartNew();
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime;
        SyntheticDefectSetInfo info = SyntheticDefectSet.Generate(tmp.Path);
        cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu;
        TestContext.WriteLine($"default set generated in {watch.Elapsed.TotalSeconds:F2} s ({cpu.TotalSeconds:F2} s of processor time)");
        Assert.AreEqual(256, info.ImageSize);
        var ml = new MLContext(seed: 0);
        foreach (SyntheticCategoryInfo category in info.Categories)
        {
            Assert.AreEqual(60, ml.Data.LoadMvtecAd(info.Root, category.Name, MvtecSplit.Train).GetRowCount());
            var test = ml.Data.CreateEnumerable<MvtecImage>(ml.Data.LoadMvtecAd(info.Root, category.Name, MvtecSplit.Test), false).ToList();
            Assert.AreEqual(40, test.Count);
            Assert.AreEqual(20, test.Count(r => r.Label));
            Assert.AreEqual(5, test.Count(r => r.DefectType == "scratch"));
        }

        using MLImage image = MLImage.CreateFromFile(Path.Combine(info.Root, "washer", "test", "hole", "000.png"));
        Assert.AreEqual(256, image.Width);
        Assert.AreEqual(256, image.Height);
    }

    [TestMethod]
    public void ExistingCategoryFolderNeedsOverwrite()
    {
        using var tmp = new TempFolder();
        SyntheticDefectSet.Generate(tmp.Path, Small());
        var ex = Assert.ThrowsExactly<IOException>(() => SyntheticDefectSet.Generate(tmp.Path, Small()));
        StringAssert.Contains(ex.Message, $"'{tmp.Combine("weave")}' already exists and is not empty");
        StringAssert.Contains(ex.Message, "Overwrite");

        SyntheticDefectSetOptions fewer = Small();
        fewer.TrainCount = 2;
        fewer.Overwrite = true;
        SyntheticDefectSet.Generate(tmp.Path, fewer);
        Assert.AreEqual(2, Directory.GetFiles(tmp.Combine("weave", "train", "good")).Length);
    }

    [TestMethod]
    public void BadOptionsAreNamed()
    {
        using var tmp = new TempFolder();
        var size = Assert.ThrowsExactly<ArgumentException>(() => SyntheticDefectSet.Generate(tmp.Path, new SyntheticDefectSetOptions { ImageSize = 16 }));
        Assert.AreEqual("options", size.ParamName);
        StringAssert.Contains(size.Message, "ImageSize must be between 32 and 2048 pixels; it is 16.");
        var train = Assert.ThrowsExactly<ArgumentException>(() => SyntheticDefectSet.Generate(tmp.Path, new SyntheticDefectSetOptions { TrainCount = 0 }));
        StringAssert.Contains(train.Message, "TrainCount must be at least 1");
        var cat = Assert.ThrowsExactly<ArgumentException>(() => SyntheticDefectSet.Generate(tmp.Path, new SyntheticDefectSetOptions { Categories = ["bottle"] }));
        StringAssert.Contains(cat.Message, "Unknown synthetic category 'bottle'; the categories are: weave, washer.");
        var twice = Assert.ThrowsExactly<ArgumentException>(() => SyntheticDefectSet.Generate(tmp.Path, new SyntheticDefectSetOptions { Categories = ["washer", "washer"] }));
        StringAssert.Contains(twice.Message, "'washer' is listed twice");
        var root = Assert.ThrowsExactly<ArgumentException>(() => SyntheticDefectSet.Generate(" "));
        Assert.AreEqual("root", root.ParamName);
        Assert.IsEmpty(Directory.GetFileSystemEntries(tmp.Path));
    }
}
