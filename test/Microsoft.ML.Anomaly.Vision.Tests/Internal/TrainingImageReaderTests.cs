using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

namespace Microsoft.ML.Anomaly.Vision.Tests.Internal;

[TestClass]
public sealed class TrainingImageReaderTests
{
    private sealed class NumberRow
    {
        public float Image { get; set; }
    }

    [TestMethod]
    public void ReadBatches_FiveImagesInBatchesOfTwo_GivesTwoTwoOne()
    {
        var mlContext = new MLContext();
        string dir = TestImages.NewDirectory();
        byte[] reds = [0, 60, 120, 180, 240];
        var rows = reds.Select((r, i) => new ImagePathRow { ImagePath = TestImages.WriteUniformPng(dir, $"{i}.png", 3, 2, r, 0, 255) }).ToArray();
        var batches = TrainingImageReader.ReadBatches(mlContext.Data.LoadFromEnumerable(rows), "ImagePath", 2, 2, 2, ImageAnomalyDetectorOptions.DefaultMaxImagePixels).ToList();

        CollectionAssert.AreEqual(new[] { 2, 2, 1 }, batches.Select(b => b.Count).ToArray());
        CollectionAssert.AreEqual(new[] { 24, 24, 12 }, batches.Select(b => b.Images.Length).ToArray());
        // Image 3 is the second of batch 1: its R plane is uniform N(180), its B plane N(255).
        float[] image3 = batches[1].Images[12..24];
        Assert.AreEqual(TestImages.Normalize(180, 0), image3[0], 1e-5f);
        Assert.AreEqual(TestImages.Normalize(180, 0), image3[3], 1e-5f);
        Assert.AreEqual(TestImages.Normalize(0, 1), image3[4], 1e-5f);
        Assert.AreEqual(TestImages.Normalize(255, 2), image3[11], 1e-5f);
    }

    [TestMethod]
    public void ReadBatches_ImageColumn_ReadsMLImages()
    {
        var mlContext = new MLContext();
        string dir = TestImages.NewDirectory();
        var rows = new[] { new ImagePathRow { ImagePath = TestImages.WriteUniformPng(dir, "a.png", 4, 4, 30, 60, 90) } };
        IDataView images = mlContext.Transforms.LoadImages("Image", null, "ImagePath").Fit(mlContext.Data.LoadFromEnumerable(rows)).Transform(mlContext.Data.LoadFromEnumerable(rows));
        var batch = TrainingImageReader.ReadBatches(images, "Image", 2, 2, 8, ImageAnomalyDetectorOptions.DefaultMaxImagePixels).Single();
        Assert.AreEqual(1, batch.Count);
        Assert.AreEqual(TestImages.Normalize(60, 1), batch.Images[5], 1e-5f);
    }

    [TestMethod]
    public void ReadBatches_EmptyData_ThrowsNamingData()
    {
        var mlContext = new MLContext();
        IDataView empty = mlContext.Data.LoadFromEnumerable(Array.Empty<ImagePathRow>());
        var ex = Assert.ThrowsExactly<ArgumentException>(() => TrainingImageReader.ReadBatches(empty, "ImagePath", 2, 2, 2, ImageAnomalyDetectorOptions.DefaultMaxImagePixels).ToList());
        Assert.AreEqual("data", ex.ParamName);
        StringAssert.Contains(ex.Message, "no rows");
    }

    [TestMethod]
    public void ReadBatches_WrongColumnType_NamesColumnAndType()
    {
        var mlContext = new MLContext();
        IDataView data = mlContext.Data.LoadFromEnumerable(new[] { new NumberRow { Image = 1 } });
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => TrainingImageReader.ReadBatches(data, "Image", 2, 2, 2, ImageAnomalyDetectorOptions.DefaultMaxImagePixels));
        StringAssert.Contains(ex.Message, "'Image'");
        StringAssert.Contains(ex.Message, "Single");
    }

    [TestMethod]
    public void ReadBatches_MissingColumn_NamesColumn()
    {
        var mlContext = new MLContext();
        IDataView data = mlContext.Data.LoadFromEnumerable(new[] { new NumberRow { Image = 1 } });
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => TrainingImageReader.ReadBatches(data, "Pictures", 2, 2, 2, ImageAnomalyDetectorOptions.DefaultMaxImagePixels));
        StringAssert.Contains(ex.Message, "'Pictures'");
    }

    [TestMethod]
    public void ReadBatches_UnreadableImage_NamesRowAndPath()
    {
        var mlContext = new MLContext();
        string dir = TestImages.NewDirectory();
        string missing = Path.Combine(dir, "gone.png");
        var rows = new[] { new ImagePathRow { ImagePath = TestImages.WriteUniformPng(dir, "ok.png", 2, 2, 1, 2, 3) }, new ImagePathRow { ImagePath = missing } };
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => TrainingImageReader.ReadBatches(mlContext.Data.LoadFromEnumerable(rows), "ImagePath", 2, 2, 8, ImageAnomalyDetectorOptions.DefaultMaxImagePixels).ToList());
        StringAssert.Contains(ex.Message, "Row 1");
        StringAssert.Contains(ex.Message, missing);
    }
}
