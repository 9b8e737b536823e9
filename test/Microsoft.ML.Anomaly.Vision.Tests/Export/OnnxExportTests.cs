using Microsoft.ML.Anomaly.Vision.Export;
using Microsoft.ML.Anomaly.Vision.Onnx;
using Microsoft.ML.Anomaly.Vision.Tests.Backbones;
using Microsoft.ML.Anomaly.Vision.Tests.Detectors;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Microsoft.ML.Anomaly.Vision.Tests.Export;

[TestClass]
public sealed class OnnxExportTests
{
    private const int Size = DetectorFixture.Size;

    [TestMethod]
    [DataRow("cfa")]
    [DataRow("dfm-fre")]
    [DataRow("dfm-nll")]
    [DataRow("cflow")]
    public void ExportedFileScoresAsTheTransformerInBatchesOfOneAndFour(string detector)
    {
        var ml = new MLContext(seed: 1);
        var model = (BackboneAnomalyTransformerBase)DetectorFixture.Estimator(ml, detector).Fit(DetectorFixture.Train(ml));
        AssertExportedFileScoresAsTheTransformer(ml, model, detector);
    }

    [TestMethod]
    [DataRow("cfa")]
    [DataRow("dfm-nll")]
    [DataRow("cflow")]
    public void ADetectorOnTheDefaultImageNetBackboneExportsAndScoresAsTheTransformer(string detector)
    {
        var ml = new MLContext(seed: 1);
        var model = (BackboneAnomalyTransformerBase)DetectorFixture.Estimator(ml, detector, defaultBackbone: true).Fit(DetectorFixture.Train(ml));
        Assert.AreEqual(ImageNetBackbones.ResNet18Description, model.BackboneDescription);
        AssertExportedFileScoresAsTheTransformer(ml, model, detector);
    }

    [TestMethod]
    public void AModelSavedWithTheImageNetBackboneAtOpsetEightScoresAsBeforeAndExports()
    {
        // Earlier versions wrote the converted ResNet-18 at the package file's opset 8, with BatchNormalization's spatial = 1,
        // and saved models hold those bytes.
        ModelProto converted = BackboneTestModels.Parse(ImageNetBackbones.ResNet18().GetOnnxBytes());
        Assert.AreEqual(ImageNetBackbones.ConvertedOpset, converted.OpsetImport.Single().Version);
        Assert.IsFalse(converted.Graph.Node.Any(n => n.Attribute.Any(a => a.Name == "spatial")));
        ModelProto legacy = converted.Clone();
        legacy.OpsetImport.Single().Version = 8;
        legacy.IrVersion = 4;
        foreach (NodeProto node in legacy.Graph.Node.Where(n => n.OpType == "BatchNormalization"))
            node.Attribute.Add(new AttributeProto { Name = "spatial", Type = AttributeProto.Types.AttributeType.Int, I = 1 });
        string folder = TestImages.NewDirectory();
        string legacyPath = Path.Combine(folder, "resnet18-imagenet-opset8.onnx");
        File.WriteAllBytes(legacyPath, BackboneTestModels.Serialize(legacy));

        var ml = new MLContext(seed: 1);
        DfmOptions Options(string? backbonePath) => new()
        {
            BackbonePath = backbonePath, InputColumnName = "ImagePath", ImageHeight = Size, ImageWidth = Size, Layer = "layer2", ScoreType = DfmScoreType.Fre,
        };
        IDataView train = DetectorFixture.Train(ml);
        using var current = (BackboneAnomalyTransformerBase)ml.Transforms.DetectDfmAnomalies(Options(null)).Fit(train);
        using var fitted = (BackboneAnomalyTransformerBase)ml.Transforms.DetectDfmAnomalies(Options(legacyPath)).Fit(train);
        string saved = Path.Combine(folder, "dfm-opset8.zip");
        ml.Model.Save(fitted, train.Schema, saved);
        using var loaded = (BackboneAnomalyTransformerBase)ml.Model.Load(saved, out _);

        var now = Scored(ml, current);
        var before = Scored(ml, loaded);
        for (int i = 0; i < now.Count; i++)
            Assert.AreEqual(now[i].Score, before[i].Score, 1e-4f * Math.Abs(now[i].Score), $"score of {Path.GetFileName(now[i].Path)} on the opset-8 backbone");
        AssertExportedFileScoresAsTheTransformer(ml, loaded, "dfm-fre on the opset-8 ImageNet backbone");
    }

    /// <summary>
    /// Exports <paramref name="model"/> over an older file and checks that ONNX Runtime gives the transformer's scores
    /// and maps for every test image, in batches of one and of four.
    /// </summary>
    private static void AssertExportedFileScoresAsTheTransformer(MLContext ml, BackboneAnomalyTransformerBase model, string detector)
    {
        var expected = Scored(ml, model);

        string folder = TestImages.NewDirectory();
        string file = Path.Combine(folder, detector + ".onnx");
        File.WriteAllText(file, "an older file the export replaces");
        model.ExportToOnnx(file);
        CollectionAssert.AreEqual(new[] { file }, Directory.GetFiles(folder), "the temporary file must be renamed onto the target");

        using var session = new InferenceSession(file);
        Assert.AreEqual(DetectorOnnxExport.InputName, session.InputMetadata.Keys.Single());
        CollectionAssert.AreEqual(model.ProducesMap ? new[] { "Score", "AnomalyMap" } : new[] { "Score" }, session.OutputMetadata.Keys.ToArray());
        foreach (int batch in new[] { 1, 4 })
        {
            for (int first = 0; first + batch <= expected.Count; first += batch)
            {
                var rows = expected.Skip(first).Take(batch).ToArray();
                using var input = OrtValue.CreateTensorValueFromMemory(ImageTensor(rows), [batch, 3, Size, Size]);
                using var outputs = session.Run(new RunOptions(), [DetectorOnnxExport.InputName], [input], session.OutputNames);
                AssertMatches(rows, outputs[0].GetTensorDataAsSpan<float>(), model.ProducesMap ? outputs[1].GetTensorDataAsSpan<float>() : [], $"{detector}, batch {batch}");
            }
        }
    }

    [TestMethod]
    [DataRow("cfa", false)]
    [DataRow("cflow", false)]
    [DataRow("dfm-fre", true)]
    public void ConvertToOnnxWritesTheDetectorWithItsColumnsAndPredictedLabel(string detector, bool defaultBackbone)
    {
        var ml = new MLContext(seed: 1);
        var fitted = (BackboneAnomalyTransformerBase)DetectorFixture.Estimator(ml, detector, defaultBackbone).Fit(DetectorFixture.Train(ml));
        var expected = Scored(ml, fitted);
        // Halfway between two scores, so that rounding differences cannot move a score across it.
        float[] sorted = [.. expected.Select(r => r.Score).Order()];
        float threshold = (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        ITransformer model = fitted.WithThreshold(threshold);

        string file = Path.Combine(TestImages.NewDirectory(), detector + "-mlnet.onnx");
        IDataView imageColumnOnly = ml.Data.LoadFromEnumerable(new[] { new ImagePathRow { ImagePath = "" } });
        using (var stream = File.Create(file))
            ml.Model.ConvertToOnnx(model, imageColumnOnly, stream, "Score", "AnomalyMap", "PredictedLabel");

        using var session = new InferenceSession(file);
        Assert.AreEqual("ImagePath", session.InputMetadata.Keys.Single(), "the image column becomes the image tensor input");
        CollectionAssert.AreEquivalent(new[] { "Score.output", "AnomalyMap.output", "PredictedLabel.output" }, session.OutputNames.ToArray(), string.Join(", ", session.OutputNames));
        var rows = expected.Take(4).ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(ImageTensor(rows), [rows.Length, 3, Size, Size]);
        using var outputs = session.Run(new RunOptions(), ["ImagePath"], [input], ["Score.output", "AnomalyMap.output", "PredictedLabel.output"]);
        AssertMatches(rows, outputs[0].GetTensorDataAsSpan<float>(), outputs[1].GetTensorDataAsSpan<float>(), $"{detector} through ConvertToOnnx");
        bool[] labels = outputs[2].GetTensorDataAsSpan<bool>().ToArray();
        CollectionAssert.AreEqual(rows.Select(r => r.Score >= threshold).ToArray(), labels);
    }

    [TestMethod]
    public void APipelineThatLoadsImagesCannotBeConvertedAndSaysWhy()
    {
        var ml = new MLContext(seed: 1);
        var pipeline = ml.Transforms.LoadImages("Image", DetectorFixture.DataRoot, "ImagePath")
            .Append(ml.Transforms.DetectDfmAnomalies(new DfmOptions
            {
                BackbonePath = DetectorFixture.BackbonePath, InputColumnName = "Image", ImageHeight = Size, ImageWidth = Size, Layer = "layer2",
            }));
        IDataView train = DetectorFixture.Train(ml);
        ITransformer model = pipeline.Fit(train);
        using var stream = new MemoryStream();
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => ml.Model.ConvertToOnnx(model, train, stream));
        StringAssert.Contains(error.Message, "'Image'");
        StringAssert.Contains(error.Message, "cannot be exported");
    }

    [TestMethod]
    public void ABackboneOperatorThatChangedBetweenOpsetsIsRefused()
    {
        var graph = new GraphProto();
        graph.Node.Add(new NodeProto { OpType = "Conv", Input = { "x", "w" }, Output = { "y" } });
        graph.Node.Add(new NodeProto { OpType = "Squeeze", Input = { "y", "axes" }, Output = { "z" } });
        OnnxOpsetCompatibility.Check(graph, 17, 17, "");
        var error = Assert.ThrowsExactly<NotSupportedException>(() => OnnxOpsetCompatibility.Check(graph, 17, 12, "Use the other path."));
        StringAssert.Contains(error.Message, "Squeeze");
        StringAssert.Contains(error.Message, "Use the other path.");

        graph.Node[1].OpType = "Erf";
        error = Assert.ThrowsExactly<NotSupportedException>(() => OnnxOpsetCompatibility.Check(graph, 17, 13, ""));
        StringAssert.Contains(error.Message, "Erf");
    }

    [TestMethod]
    public void ExportIntoAMissingFolderThrowsAndWritesNothing()
    {
        var ml = new MLContext(seed: 1);
        var model = (BackboneAnomalyTransformerBase)DetectorFixture.Estimator(ml, "dfm-fre").Fit(DetectorFixture.Train(ml));
        string missing = Path.Combine(TestImages.NewDirectory(), "missing", "model.onnx");
        Assert.ThrowsExactly<DirectoryNotFoundException>(() => model.ExportToOnnx(missing));
        Assert.IsFalse(Directory.Exists(Path.GetDirectoryName(missing)));
    }

    /// <summary>Every test image with the transformer's score and map (empty when the detector makes none).</summary>
    private static List<ScoredImage> Scored(MLContext ml, BackboneAnomalyTransformerBase model)
    {
        IDataView scored = model.Transform(DetectorFixture.Test(ml));
        var paths = scored.GetColumn<string>("ImagePath").ToArray();
        var scores = scored.GetColumn<float>("Score").ToArray();
        var maps = model.ProducesMap
            ? scored.GetColumn<VBuffer<float>>("AnomalyMap").Select(m => m.DenseValues().ToArray()).ToArray()
            : paths.Select(_ => Array.Empty<float>()).ToArray();
        return paths.Select((p, i) => new ScoredImage(p, scores[i], maps[i])).ToList();
    }

    /// <summary>The images as batch × 3 × H × W RGB values in 0–255, the exported graph's input.</summary>
    private static float[] ImageTensor(IReadOnlyList<ScoredImage> rows)
    {
        int plane = Size * Size;
        var tensor = new float[rows.Count * 3 * plane];
        for (int i = 0; i < rows.Count; i++)
        {
            using MLImage image = MLImage.CreateFromFile(rows[i].Path);
            Assert.AreEqual(Size, image.Width, "the test images are at the fitted size");
            DetectorOnnxExport.WriteInput(image, tensor.AsSpan(i * 3 * plane, 3 * plane));
        }
        return tensor;
    }

    /// <summary>Scores within 1e-4 of the transformer's, relative to each score; maps within 1e-4 of the map's largest magnitude.</summary>
    private static void AssertMatches(IReadOnlyList<ScoredImage> rows, ReadOnlySpan<float> scores, ReadOnlySpan<float> maps, string what)
    {
        Assert.AreEqual(rows.Count, scores.Length, what);
        int pixels = Size * Size;
        for (int i = 0; i < rows.Count; i++)
        {
            float expected = rows[i].Score;
            Assert.AreEqual(expected, scores[i], 1e-4f * Math.Abs(expected), $"{what}: score of {Path.GetFileName(rows[i].Path)}");
            if (rows[i].Map.Length == 0)
                continue;
            ReadOnlySpan<float> map = maps.Slice(i * pixels, pixels);
            float scale = rows[i].Map.Max(Math.Abs);
            float worst = 0;
            for (int p = 0; p < pixels; p++)
                worst = Math.Max(worst, Math.Abs(map[p] - rows[i].Map[p]));
            Assert.IsLessThanOrEqualTo(1e-4f * scale, worst, $"{what}: map of {Path.GetFileName(rows[i].Path)}");
        }
    }

    private sealed record ScoredImage(string Path, float Score, float[] Map);
}
