using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Evaluation;

/// <summary>
/// Ground-truth masks that do not fit their rows: a mask of another size than its image (resizing it would move the
/// defect), and a defect mask on a row labelled good. Both are errors naming the row, not silently used.
/// </summary>
[TestClass]
public sealed class MaskConsistencyTests
{
    private sealed class Row
    {
        public string ImagePath { get; set; } = "";

        public bool Label { get; set; }

        public float Score { get; set; }

        [VectorType(2, 2)]
        public float[] AnomalyMap { get; set; } = [];

        public string MaskPath { get; set; } = "";
    }

    private static (string Image, string Mask) Files(int imageSize, int maskSize, bool defect)
    {
        string folder = EvaluationTestImages.NewFolder();
        string image = EvaluationTestImages.WritePng(Path.Combine(folder, "image.png"), imageSize, imageSize, (_, _) => (90, 90, 90));
        string mask = EvaluationTestImages.WriteGrayPng(Path.Combine(folder, "mask.png"), maskSize, maskSize,
            (y, x) => defect && y < maskSize / 2 && x < maskSize / 2 ? (byte)255 : (byte)0);
        return (image, mask);
    }

    private static Row[] Rows(string image, string mask, bool maskedRowLabel) =>
    [
        new Row { ImagePath = image, Label = false, Score = 0.1f, AnomalyMap = [0.1f, 0.1f, 0.1f, 0.1f] },
        new Row { ImagePath = image, Label = true, Score = 0.8f, AnomalyMap = [0.9f, 0.1f, 0.1f, 0.1f] },
        new Row { ImagePath = image, Label = maskedRowLabel, Score = 0.9f, AnomalyMap = [0.9f, 0.2f, 0.1f, 0.1f], MaskPath = mask },
    ];

    [TestMethod]
    public void AMaskOfItsImagesSizeIsResizedToTheMap()
    {
        var (image, mask) = Files(imageSize: 8, maskSize: 8, defect: true);
        var ml = new MLContext(0);
        var metrics = ml.AnomalyDetection.EvaluateImageAnomalies(ml.Data.LoadFromEnumerable(Rows(image, mask, maskedRowLabel: true)));
        // One anomalous pixel (0.9), eleven good ones of which one also scores 0.9: half a tie.
        Assert.AreEqual(10.5 / 11, metrics.PixelAuroc!.Value, 1e-12);
    }

    [TestMethod]
    public void AMaskOfAnotherSizeThanItsImageIsRefusedNamingTheRowAndBothSizes()
    {
        var (image, mask) = Files(imageSize: 8, maskSize: 4, defect: true);
        var ml = new MLContext(0);
        IDataView scored = ml.Data.LoadFromEnumerable(Rows(image, mask, maskedRowLabel: true));
        var error = Assert.ThrowsExactly<ArgumentException>(() => ml.AnomalyDetection.EvaluateImageAnomalies(scored));
        StringAssert.Contains(error.Message, "row 2");
        StringAssert.Contains(error.Message, mask);
        StringAssert.Contains(error.Message, "4×4");
        StringAssert.Contains(error.Message, "8×8");
    }

    [TestMethod]
    public void ADefectMaskOnARowLabelledGoodIsRefusedNamingTheRow()
    {
        var (image, mask) = Files(imageSize: 8, maskSize: 8, defect: true);
        var ml = new MLContext(0);
        IDataView scored = ml.Data.LoadFromEnumerable(Rows(image, mask, maskedRowLabel: false));
        var error = Assert.ThrowsExactly<ArgumentException>(() => ml.AnomalyDetection.EvaluateImageAnomalies(scored));
        StringAssert.Contains(error.Message, "row 2");
        StringAssert.Contains(error.Message, mask);
        StringAssert.Contains(error.Message, "Label");
    }

    [TestMethod]
    public void AnEmptyMaskOnARowLabelledGoodIsAccepted()
    {
        var (image, mask) = Files(imageSize: 8, maskSize: 8, defect: false);
        var ml = new MLContext(0);
        Row[] rows = Rows(image, mask, maskedRowLabel: false);
        var (_, defectMask) = Files(imageSize: 8, maskSize: 8, defect: true);
        rows[1].MaskPath = defectMask;
        rows[2].AnomalyMap = [0.3f, 0.2f, 0.1f, 0.1f];
        var metrics = ml.AnomalyDetection.EvaluateImageAnomalies(ml.Data.LoadFromEnumerable(rows));
        Assert.AreEqual(1.0, metrics.PixelAuroc!.Value, 1e-12);
    }
}
