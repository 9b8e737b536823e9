using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Detectors;

[TestClass]
public sealed class DetectorInputTests
{
    [TestMethod]
    [DataRow("cfa")]
    [DataRow("dfm-fre")]
    [DataRow("cflow")]
    public void EmptyTrainingSetIsRejected(string detector)
    {
        var ml = new MLContext();
        IDataView empty = ml.Data.LoadFromEnumerable(Array.Empty<ImagePathRow>());
        var error = Assert.Throws<ArgumentException>(() => DetectorFixture.Estimator(ml, detector).Fit(empty));
        StringAssert.Contains(error.Message, "no rows");
    }

    [TestMethod]
    [DataRow("cfa", "BatchSize", int.MaxValue)]
    [DataRow("dfm-fre", "BatchSize", int.MaxValue)]
    [DataRow("cflow", "BatchSize", int.MaxValue)]
    [DataRow("cfa", "ImageHeight", int.MaxValue)]
    [DataRow("dfm-fre", "ImageWidth", int.MaxValue)]
    [DataRow("cflow", "ImageHeight", 1 << 20)]
    [DataRow("cfa", "NumNearestNeighbors", int.MaxValue)]
    [DataRow("cflow", "CouplingBlocks", int.MaxValue)]
    [DataRow("cflow", "ConditionVectorSize", int.MaxValue - 3)]
    public void OversizedNumericOptionsAreRefusedWithTheOptionNamed(string detector, string option, int value)
    {
        var ml = new MLContext(seed: 1);
        var options = DetectorFixture.Options(detector);
        options.GetType().GetProperty(option)!.SetValue(options, value);
        var error = Assert.ThrowsExactly<ArgumentException>(() => DetectorFixture.Estimator(ml, options).Fit(DetectorFixture.Train(ml)), $"{detector} {option}");
        StringAssert.Contains(error.Message, option, detector);
        StringAssert.Contains(error.Message, value.ToString(System.Globalization.CultureInfo.InvariantCulture), detector);
        Assert.AreEqual("options", error.ParamName);
    }

    [TestMethod]
    public void BackboneAndBackbonePathTogetherAreRejectedWithTheOptionNames()
    {
        var ml = new MLContext();
        var options = new CfaOptions { Backbone = ImageNetBackbones.ResNet18(), BackbonePath = DetectorFixture.BackbonePath };
        var error = Assert.Throws<ArgumentException>(() => ml.Transforms.DetectCfaAnomalies(options));
        Assert.AreEqual("options", error.ParamName);
        StringAssert.Contains(error.Message, nameof(CfaOptions.Backbone));
        StringAssert.Contains(error.Message, nameof(CfaOptions.BackbonePath));
    }

    [TestMethod]
    public void MissingBackboneFileIsNamed()
    {
        var ml = new MLContext();
        string missing = Path.Combine(TestImages.NewDirectory(), "nowhere.onnx");
        var estimator = ml.Transforms.DetectDfmAnomalies(missing, "ImagePath", DetectorFixture.Size);
        var error = Assert.Throws<FileNotFoundException>(() => estimator.Fit(DetectorFixture.Train(ml)));
        StringAssert.Contains(error.Message, missing);
    }

    [TestMethod]
    public void WrongInputColumnTypeIsNamed()
    {
        var ml = new MLContext();
        IDataView numbers = ml.Data.LoadFromEnumerable(new[] { new NumberRow { ImagePath = 1f } });
        var estimator = ml.Transforms.DetectCfaAnomalies(DetectorFixture.BackbonePath, "ImagePath", DetectorFixture.Size);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(SchemaShape.Create(numbers.Schema)));
        StringAssert.Contains(error.Message, "ImagePath");
    }

    [TestMethod]
    public void ImagesOfMixedSizesAreResizedToTheInputSize()
    {
        var ml = new MLContext(seed: 1);
        string folder = TestImages.NewDirectory();
        var paths = new List<ImagePathRow>();
        foreach (int size in new[] { 48, 64, 96 })
        {
            string root = Path.Combine(folder, size.ToString(System.Globalization.CultureInfo.InvariantCulture));
            SyntheticDefectSet.Generate(root, new SyntheticDefectSetOptions
            { Categories = [SyntheticDefectSet.Weave], ImageSize = size, TrainCount = 3, TestGoodCount = 1, TestDefectCount = 1 });
            paths.AddRange(ml.Data.CreateEnumerable<ImagePathRow>(
                ml.Data.LoadMvtecAd(root, SyntheticDefectSet.Weave, MvtecSplit.Train), reuseRowObject: false));
        }
        IDataView mixed = ml.Data.LoadFromEnumerable(paths);
        ITransformer model = DetectorFixture.Estimator(ml, "dfm-fre").Fit(mixed);
        var scored = ml.Data.CreateEnumerable<MapRow>(model.Transform(mixed), reuseRowObject: false).ToList();
        Assert.HasCount(9, scored);
        foreach (var row in scored)
        {
            Assert.IsTrue(float.IsFinite(row.Score));
            Assert.HasCount(DetectorFixture.Size * DetectorFixture.Size, row.AnomalyMap, "every map has the detector's input size");
        }
    }

    /// <summary>A scored row with its anomaly map.</summary>
    public sealed class MapRow
    {
        /// <summary>The score.</summary>
        public float Score { get; set; }

        /// <summary>The anomaly map.</summary>
        public float[] AnomalyMap { get; set; } = [];
    }

    /// <summary>A row with a number where an image is expected.</summary>
    public sealed class NumberRow
    {
        /// <summary>Not an image.</summary>
        public float ImagePath { get; set; }
    }
}
