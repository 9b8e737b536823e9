using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests;

[TestClass]
public sealed class MvtecAdLoaderTests
{
    private static void Touch(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, [1, 2, 3]);
    }

    private static List<MvtecImage> Rows(IDataView view) =>
        new MLContext(seed: 0).Data.CreateEnumerable<MvtecImage>(view, reuseRowObject: false).ToList();

    [TestMethod]
    public void LoadsJpgLayoutInOrdinalOrderAndIgnoresOtherFiles()
    {
        using var tmp = new TempFolder();
        string cat = tmp.Combine("screw");
        // Real JPEG and WebP files written by ML.NET's image type, a BMP stand-in, mixed-case extensions.
        byte[] pixels = new byte[4 * 4 * 4];
        using (MLImage image = MLImage.CreateFromPixels(4, 4, MLPixelFormat.Rgba32, pixels))
        {
            Directory.CreateDirectory(Path.Combine(cat, "train", "good"));
            image.Save(Path.Combine(cat, "train", "good", "000.jpg"));
            image.Save(Path.Combine(cat, "train", "good", "003.webp"));
        }

        File.Copy(Path.Combine(cat, "train", "good", "000.jpg"), Path.Combine(cat, "train", "good", "001.JPG"));
        Touch(Path.Combine(cat, "train", "good", "002.Bmp"));
        Touch(Path.Combine(cat, "train", "good", "notes.txt"));
        Touch(Path.Combine(cat, "train", "good", ".hidden.png"));
        Touch(Path.Combine(cat, "test", "good", "000.jpeg"));
        Touch(Path.Combine(cat, "test", "crack", "000.jpg"));
        Touch(Path.Combine(cat, "test", "crack", "001.jpg"));
        Touch(Path.Combine(cat, "test", "bent", "000.jpg"));
        Touch(Path.Combine(cat, "ground_truth", "crack", "000_mask.png"));
        Touch(Path.Combine(cat, "ground_truth", "crack", "001_mask.jpg"));
        Touch(Path.Combine(cat, "ground_truth", "crack", "001_mask.png"));
        Touch(Path.Combine(cat, "ground_truth", "bent", "000_mask.PNG"));

        var ml = new MLContext(seed: 0);
        IDataView train = ml.Data.LoadMvtecAd(tmp.Path, "screw", MvtecSplit.Train);
        List<MvtecImage> trainRows = Rows(train);
        CollectionAssert.AreEqual(
            new[] { "000.jpg", "001.JPG", "002.Bmp", "003.webp" },
            trainRows.Select(r => Path.GetFileName(r.ImagePath)).ToArray());
        Assert.IsTrue(trainRows.All(r => !r.Label && r.DefectType == "good" && r.MaskPath.Length == 0));
        Assert.IsTrue(trainRows.All(r => Path.IsPathFullyQualified(r.ImagePath) && File.Exists(r.ImagePath)));

        List<MvtecImage> testRows = Rows(ml.Data.LoadMvtecAd(tmp.Path, "screw", MvtecSplit.Test));
        CollectionAssert.AreEqual(
            new[] { "bent/000.jpg", "crack/000.jpg", "crack/001.jpg", "good/000.jpeg" },
            testRows.Select(r => r.DefectType + "/" + Path.GetFileName(r.ImagePath)).ToArray());
        CollectionAssert.AreEqual(new[] { true, true, true, false }, testRows.Select(r => r.Label).ToArray());
        CollectionAssert.AreEqual(
            new[] { "000_mask.PNG", "000_mask.png", "001_mask.png", "" },
            testRows.Select(r => r.MaskPath.Length == 0 ? "" : Path.GetFileName(r.MaskPath)).ToArray());
        Assert.AreEqual(Path.Combine(cat, "ground_truth", "crack", "000_mask.png"), testRows[1].MaskPath);
    }

    [TestMethod]
    public void SchemaHasTheFourColumnsWithTheirTypes()
    {
        using var tmp = new TempFolder();
        Touch(tmp.Combine("c", "train", "good", "0.png"));
        IDataView view = new MLContext(seed: 0).Data.LoadMvtecAd(tmp.Path, "c", MvtecSplit.Train);
        Assert.AreEqual(TextDataViewType.Instance, view.Schema["ImagePath"].Type);
        Assert.AreEqual(BooleanDataViewType.Instance, view.Schema["Label"].Type);
        Assert.AreEqual(TextDataViewType.Instance, view.Schema["DefectType"].Type);
        Assert.AreEqual(TextDataViewType.Instance, view.Schema["MaskPath"].Type);
        Assert.AreEqual(4, view.Schema.Count);
    }

    [TestMethod]
    public void MissingRootIsNamed()
    {
        using var tmp = new TempFolder();
        string root = tmp.Combine("nowhere");
        var ex = Assert.ThrowsExactly<ArgumentException>(() => new MLContext().Data.LoadMvtecAd(root, "bottle", MvtecSplit.Train));
        Assert.AreEqual("root", ex.ParamName);
        StringAssert.Contains(ex.Message, root);
        StringAssert.Contains(ex.Message, "does not exist");
    }

    [TestMethod]
    public void MissingCategoryListsTheCategoriesFound()
    {
        using var tmp = new TempFolder();
        Touch(tmp.Combine("cable", "train", "good", "0.png"));
        Touch(tmp.Combine("bottle", "test", "good", "0.png"));
        Directory.CreateDirectory(tmp.Combine("license_not_a_category"));
        var ex = Assert.ThrowsExactly<ArgumentException>(() => new MLContext().Data.LoadMvtecAd(tmp.Path, "carpet", MvtecSplit.Train));
        Assert.AreEqual("category", ex.ParamName);
        StringAssert.Contains(ex.Message, tmp.Combine("carpet"));
        StringAssert.Contains(ex.Message, "Categories found in");
        StringAssert.Contains(ex.Message, ": bottle, cable.");

        CollectionAssert.AreEqual(new[] { "bottle", "cable" }, MvtecAd.ListCategories(tmp.Path).ToArray());
        var path = Assert.ThrowsExactly<ArgumentException>(() => MvtecAd.ReadImages(tmp.Path, "../cable", MvtecSplit.Train));
        Assert.AreEqual("category", path.ParamName);
    }

    [TestMethod]
    public void MissingTrainGoodIsNamed()
    {
        using var tmp = new TempFolder();
        Touch(tmp.Combine("wood", "train", "defect", "0.png"));
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => new MLContext().Data.LoadMvtecAd(tmp.Path, "wood", MvtecSplit.Train));
        StringAssert.Contains(ex.Message, $"The training images folder '{tmp.Combine("wood", "train", "good")}' is missing");
        StringAssert.Contains(ex.Message, "has no 'good' folder");

        using var tmp2 = new TempFolder();
        Touch(tmp2.Combine("wood", "test", "good", "0.png"));
        var ex2 = Assert.ThrowsExactly<InvalidDataException>(() => MvtecAd.ReadImages(tmp2.Path, "wood", MvtecSplit.Train));
        StringAssert.Contains(ex2.Message, $"the folder '{tmp2.Combine("wood", "train")}' does not exist");
    }

    [TestMethod]
    public void EmptyTrainGoodIsNamed()
    {
        using var tmp = new TempFolder();
        Touch(tmp.Combine("wood", "train", "good", "readme.txt"));
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => MvtecAd.ReadImages(tmp.Path, "wood", MvtecSplit.Train));
        StringAssert.Contains(ex.Message, $"'{tmp.Combine("wood", "train", "good")}' holds no image files");
        StringAssert.Contains(ex.Message, ".png, .jpg");
    }

    [TestMethod]
    public void MissingTestFolderIsNamed()
    {
        using var tmp = new TempFolder();
        Touch(tmp.Combine("wood", "train", "good", "0.png"));
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => MvtecAd.ReadImages(tmp.Path, "wood", MvtecSplit.Test));
        StringAssert.Contains(ex.Message, $"The test images folder '{tmp.Combine("wood", "test")}' does not exist");
    }

    [TestMethod]
    public void MissingMaskNamesImageAndExpectedMask()
    {
        using var tmp = new TempFolder();
        Touch(tmp.Combine("wood", "test", "good", "000.png"));
        Touch(tmp.Combine("wood", "test", "hole", "000.png"));
        Touch(tmp.Combine("wood", "test", "hole", "001.png"));
        Touch(tmp.Combine("wood", "ground_truth", "hole", "000_mask.png"));
        Touch(tmp.Combine("wood", "ground_truth", "hole", "001.png"));   // not named <stem>_mask
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => new MLContext().Data.LoadMvtecAd(tmp.Path, "wood", MvtecSplit.Test));
        Assert.AreEqual(
            $"The defect image '{tmp.Combine("wood", "test", "hole", "001.png")}' has no ground-truth mask: " +
            $"expected '{tmp.Combine("wood", "ground_truth", "hole", "001_mask.png")}'.",
            ex.Message);

        Touch(tmp.Combine("wood", "test", "crack", "007.png"));
        var ex2 = Assert.ThrowsExactly<InvalidDataException>(() => MvtecAd.ReadImages(tmp.Path, "wood", MvtecSplit.Test));
        StringAssert.Contains(ex2.Message, tmp.Combine("wood", "test", "crack", "007.png"));
        StringAssert.Contains(ex2.Message, tmp.Combine("wood", "ground_truth", "crack", "007_mask.png"));
        StringAssert.Contains(ex2.Message, $"(the folder '{tmp.Combine("wood", "ground_truth", "crack")}' does not exist)");
    }

    [TestMethod]
    public void TestFolderWithoutImagesIsNamed()
    {
        using var tmp = new TempFolder();
        Directory.CreateDirectory(tmp.Combine("wood", "test", "good"));
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => MvtecAd.ReadImages(tmp.Path, "wood", MvtecSplit.Test));
        StringAssert.Contains(ex.Message, $"'{tmp.Combine("wood", "test")}' holds no images");
    }
}
