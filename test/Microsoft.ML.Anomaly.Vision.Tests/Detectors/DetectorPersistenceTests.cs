using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using System.IO.Compression;
using System.Reflection;
using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Detectors;

[TestClass]
public sealed class DetectorPersistenceTests
{
    [TestMethod]
    [DataRow("cfa")]
    [DataRow("dfm-fre")]
    [DataRow("dfm-nll")]
    [DataRow("cflow")]
    public void SaveThenLoadInNewContextGivesIdenticalScoresAndPredictionEngineAgrees(string detector)
    {
        var ml = new MLContext(seed: 1);
        IDataView train = DetectorFixture.Train(ml), test = DetectorFixture.Test(ml);
        ITransformer model = DetectorFixture.Estimator(ml, detector).Fit(train);
        float[] scores = Scores(ml, model.Transform(test));
        Assert.IsTrue(scores.All(float.IsFinite));
        Assert.IsGreaterThan(0f, scores.Max() - scores.Min(), "different images must get different scores");

        string zip = Path.Combine(TestImages.NewDirectory(), detector + ".zip");
        ml.Model.Save(model, train.Schema, zip);
        var fresh = new MLContext();
        ITransformer loaded = fresh.Model.Load(zip, out _);
        Assert.AreEqual(model.GetType(), loaded.GetType());
        float[] reloaded = Scores(fresh, loaded.Transform(DetectorFixture.Test(fresh)));
        CollectionAssert.AreEqual(scores, reloaded, "the reloaded model must score exactly as the trained one");

        var rows = fresh.Data.CreateEnumerable<ImagePathRow>(DetectorFixture.Test(fresh), reuseRowObject: false).ToList();
        using var engine = fresh.Model.CreatePredictionEngine<ImagePathRow, ScoredRow>(loaded);
        for (int i = 0; i < rows.Count; i += 3)
            Assert.AreEqual(scores[i], engine.Predict(rows[i]).Score, 1e-5f, $"row {i}");
    }

    [TestMethod]
    [DataRow("cfa")]
    [DataRow("cflow")]
    public void AFreshProcessLoadsTheZipAndGivesTheSameScores(string detector)
    {
        var ml = new MLContext(seed: 1);
        IDataView train = DetectorFixture.Train(ml), test = DetectorFixture.Test(ml);
        ITransformer model = DetectorFixture.Estimator(ml, detector).Fit(train);
        float[] scores = Scores(ml, model.Transform(test));
        string zip = Path.Combine(TestImages.NewDirectory(), detector + ".zip");
        ml.Model.Save(model, train.Schema, zip);

        string[] paths = ml.Data.CreateEnumerable<ImagePathRow>(test, reuseRowObject: false).Select(r => r.ImagePath).ToArray();
        string checker = typeof(DetectorPersistenceTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "ModelLoadCheck").Value!;
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { checker, zip }.Concat(paths))
            start.ArgumentList.Add(arg);
        using var process = System.Diagnostics.Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.AreEqual(0, process.ExitCode, errors);

        float[] fresh = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => float.Parse(line, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.HasCount(scores.Length, fresh);
        for (int i = 0; i < scores.Length; i++)
            Assert.AreEqual(scores[i], fresh[i], 1e-5f, $"image {i}");
    }

    [TestMethod]
    public void CfaInAPipelineAfterLoadImagesAndResizeImagesRoundTrips()
    {
        var ml = new MLContext(seed: 1);
        var pipeline = ml.Transforms.LoadImages("Image", imageFolder: null, inputColumnName: "ImagePath")
            .Append(ml.Transforms.ResizeImages("Image", DetectorFixture.Size, DetectorFixture.Size))
            .Append(ml.Transforms.DetectCfaAnomalies(new CfaOptions
            { BackbonePath = DetectorFixture.BackbonePath, ImageHeight = DetectorFixture.Size, ImageWidth = DetectorFixture.Size, Epochs = 1 }));
        IDataView train = DetectorFixture.Train(ml);
        var model = pipeline.Fit(train);
        float[] scores = Scores(ml, model.Transform(DetectorFixture.Test(ml)));

        string zip = Path.Combine(TestImages.NewDirectory(), "pipeline.zip");
        ml.Model.Save(model, train.Schema, zip);
        var fresh = new MLContext();
        ITransformer loaded = fresh.Model.Load(zip, out _);
        CollectionAssert.AreEqual(scores, Scores(fresh, loaded.Transform(DetectorFixture.Test(fresh))));
    }

    [TestMethod]
    public void AdaptiveThresholdIsStoredAndPredictsLabels()
    {
        var ml = new MLContext(seed: 1);
        IDataView train = DetectorFixture.Train(ml), test = DetectorFixture.Test(ml);
        var model = (DfmTransformer)DetectorFixture.Estimator(ml, "dfm-fre").Fit(train);
        var rows = ml.Data.CreateEnumerable<LabelledRow>(model.Transform(test), reuseRowObject: false, ignoreMissingColumns: true).ToList();
        float threshold = AdaptiveThreshold.Compute(rows.Select(r => r.Score).ToArray(), rows.Select(r => r.Label).ToArray());

        ImageAnomalyTransformerBase labelled = model.WithThreshold(threshold);
        string zip = Path.Combine(TestImages.NewDirectory(), "dfm-threshold.zip");
        ml.Model.Save(labelled, train.Schema, zip);
        var fresh = new MLContext();
        ITransformer loaded = fresh.Model.Load(zip, out _);
        Assert.AreEqual(threshold, ((ImageAnomalyTransformerBase)loaded).Threshold);
        var predicted = fresh.Data.CreateEnumerable<LabelledRow>(loaded.Transform(DetectorFixture.Test(fresh)), reuseRowObject: false).ToList();
        for (int i = 0; i < rows.Count; i++)
            Assert.AreEqual(rows[i].Score >= threshold, predicted[i].PredictedLabel, $"row {i}");
        Assert.IsTrue(predicted.Any(r => r.PredictedLabel) && predicted.Any(r => !r.PredictedLabel), "the F1-optimal threshold splits the test set");
    }

    [TestMethod]
    public void EachDetectorsZipLoadsAsItsOwnTransformer()
    {
        var ml = new MLContext(seed: 1);
        IDataView train = DetectorFixture.Train(ml);
        string folder = TestImages.NewDirectory();
        string dfmZip = Path.Combine(folder, "dfm.zip");
        ml.Model.Save(DetectorFixture.Estimator(ml, "dfm-fre").Fit(train), train.Schema, dfmZip);

        ITransformer loaded = new MLContext().Model.Load(dfmZip, out _);
        Assert.IsInstanceOfType<DfmTransformer>(loaded);
        Assert.IsNotInstanceOfType<CfaTransformer>(loaded);
    }

    [TestMethod]
    public void DamagedModelStreamIsNamedWhenLoading()
    {
        var ml = new MLContext(seed: 1);
        IDataView train = DetectorFixture.Train(ml);
        string zip = Path.Combine(TestImages.NewDirectory(), "dfm.zip");
        ml.Model.Save(DetectorFixture.Estimator(ml, "dfm-fre").Fit(train), train.Schema, zip);
        using (var archive = ZipFile.Open(zip, ZipArchiveMode.Update))
        {
            ZipArchiveEntry entry = archive.Entries.Single(e => e.FullName.EndsWith("Dfm.bin", StringComparison.Ordinal));
            string name = entry.FullName;
            entry.Delete();
            using var stream = archive.CreateEntry(name).Open();
            stream.Write([1, 2, 3, 4, 5, 6, 7]);
        }

        FormatException error = Persistence.ModelIntegrityTests.LoadError(zip);
        StringAssert.Contains(error.Message, "Dfm.bin");
    }

    [TestMethod]
    public void FileThatIsNotAModelZipIsRejected()
    {
        string path = Path.Combine(TestImages.NewDirectory(), "not-a-model.zip");
        File.WriteAllText(path, "this is not a zip archive");
        Assert.Throws<Exception>(() => new MLContext().Model.Load(path, out _));
    }

    internal static float[] Scores(MLContext ml, IDataView scored) =>
        ml.Data.CreateEnumerable<ScoredRow>(scored, reuseRowObject: false).Select(r => r.Score).ToArray();
}

/// <summary>A scored row with its label and, once a threshold is set, the predicted label.</summary>
public sealed class LabelledRow
{
    /// <summary>True for a defective image.</summary>
    public bool Label { get; set; }

    /// <summary>The anomaly score.</summary>
    public float Score { get; set; }

    /// <summary>Score at or above the threshold.</summary>
    public bool PredictedLabel { get; set; }
}
