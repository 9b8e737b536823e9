using System.IO.Compression;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace Microsoft.ML.Anomaly.Vision.Tests.Persistence;

[TestClass]
public sealed class ImageAnomalyTransformerPersistenceTests
{
    // Training images: uniform (R,G,B) = (0,0,0) and (255,255,255) → m = mean of all normalized values.
    private static readonly float TrainMean =
        (TestImages.Normalize(0, 0) + TestImages.Normalize(0, 1) + TestImages.Normalize(0, 2) +
         TestImages.Normalize(255, 0) + TestImages.Normalize(255, 1) + TestImages.Normalize(255, 2)) / 6f;

    private static float ExpectedScore(byte r, byte g, byte b) =>
        (MathF.Abs(TestImages.Normalize(r, 0) - TrainMean) + MathF.Abs(TestImages.Normalize(g, 1) - TrainMean) +
         MathF.Abs(TestImages.Normalize(b, 2) - TrainMean)) / 3f;

    private static readonly (byte R, byte G, byte B)[] TestColours = [(10, 20, 30), (200, 100, 50), (128, 128, 128), (255, 0, 0), (0, 0, 255)];

    private static (MLContext Context, IDataView Train, IDataView Test, string Directory) MakeData()
    {
        var mlContext = new MLContext(seed: 1);
        string dir = TestImages.NewDirectory();
        var train = new[]
        {
            new ImagePathRow { ImagePath = TestImages.WriteUniformPng(dir, "black.png", 6, 5, 0, 0, 0) },
            new ImagePathRow { ImagePath = TestImages.WriteUniformPng(dir, "white.png", 3, 7, 255, 255, 255) },
        };
        var test = TestColours.Select((c, i) => new ImagePathRow { ImagePath = TestImages.WriteUniformPng(dir, $"test{i}.png", 5, 5, c.R, c.G, c.B) }).ToArray();
        return (mlContext, mlContext.Data.LoadFromEnumerable(train), mlContext.Data.LoadFromEnumerable(test), dir);
    }

    private static float[] Scores(IDataView scored, string column = "Score") =>
        scored.GetColumn<float>(column).ToArray();

    [TestMethod]
    public void FitTransformSaveLoad_NewContext_GivesSameScores()
    {
        var (mlContext, train, test, dir) = MakeData();
        var toy = new ToyEstimator(mlContext, new ToyOptions { InputColumnName = "ImagePath", Size = 4, ScoringBatchSize = 2 });
        ToyTransformer model = toy.Fit(train);
        Assert.AreEqual(TrainMean, model.Mean, 1e-5f);

        float[] before = Scores(model.Transform(test));
        for (int i = 0; i < TestColours.Length; i++)
            Assert.AreEqual(ExpectedScore(TestColours[i].R, TestColours[i].G, TestColours[i].B), before[i], 1e-4f, $"row {i}");

        string path = Path.Combine(dir, "toy.zip");
        mlContext.Model.Save(model, test.Schema, path);

        var fresh = new MLContext(seed: 2);
        ITransformer loaded = fresh.Model.Load(path, out DataViewSchema inputSchema);
        Assert.AreEqual("ImagePath", inputSchema[0].Name);
        var loadedToy = (ToyTransformer)loaded;
        Assert.AreEqual(model.Mean, loadedToy.Mean);
        Assert.AreEqual("ImagePath", loadedToy.InputColumnName);
        Assert.AreEqual(2, loadedToy.ScoringBatchSize);
        Assert.IsNull(loadedToy.Threshold);
        CollectionAssert.AreEqual(before, Scores(loaded.Transform(test)));
    }

    [TestMethod]
    public void Transform_OutputSchema_HasScoreAndMapWithImageDimensions()
    {
        var (mlContext, train, test, _) = MakeData();
        ToyTransformer model = new ToyEstimator(mlContext, new ToyOptions { InputColumnName = "ImagePath", Size = 3 }).Fit(train);
        IDataView scored = model.Transform(test);
        DataViewSchema schema = scored.Schema;
        Assert.AreEqual(NumberDataViewType.Single, schema["Score"].Type);
        var mapType = (VectorDataViewType)schema["AnomalyMap"].Type;
        CollectionAssert.AreEqual(new[] { 3, 3 }, mapType.Dimensions.ToArray());
        Assert.IsNull(schema.GetColumnOrNull("PredictedLabel"));
        // The lazy schema of the mapper path agrees with the batched view.
        DataViewSchema viaMapper = model.GetOutputSchema(test.Schema);
        CollectionAssert.AreEqual(schema.Select(c => c.Name + ":" + c.Type).ToArray(), viaMapper.Select(c => c.Name + ":" + c.Type).ToArray());

        float[][] maps = scored.GetColumn<float[]>("AnomalyMap").ToArray();
        float expected = ExpectedScore(TestColours[1].R, TestColours[1].G, TestColours[1].B);
        Assert.AreEqual(9, maps[1].Length);
        foreach (float v in maps[1])
            Assert.AreEqual(expected, v, 1e-4f);
    }

    [TestMethod]
    public void Transform_ScoresInBatchesAndSkipsRowsNotRead()
    {
        var (mlContext, train, test, _) = MakeData();
        ToyTransformer model = new ToyEstimator(mlContext, new ToyOptions { InputColumnName = "ImagePath", ScoringBatchSize = 2 }).Fit(train);
        float[] scores = Scores(model.Transform(test));
        Assert.AreEqual(5, scores.Length);
        CollectionAssert.AreEqual(new[] { 2, 2, 1 }, model.Batches.ToArray());

        // A consumer reading the score of rows 3 and 4 only: one batch starting at row 3.
        ToyTransformer fresh = new ToyEstimator(mlContext, new ToyOptions { InputColumnName = "ImagePath", ScoringBatchSize = 2 }).Fit(train);
        IDataView scored = fresh.Transform(test);
        using DataViewRowCursor cursor = scored.GetRowCursor([scored.Schema["Score"]]);
        ValueGetter<float> score = cursor.GetGetter<float>(scored.Schema["Score"]);
        var read = new List<float>();
        while (cursor.MoveNext())
        {
            if (cursor.Position >= 3)
            {
                float value = 0;
                score(ref value);
                read.Add(value);
            }
        }
        CollectionAssert.AreEqual(new[] { 2 }, fresh.Batches.ToArray());
        Assert.AreEqual(ExpectedScore(TestColours[3].R, TestColours[3].G, TestColours[3].B), read[0], 1e-4f);
        Assert.AreEqual(ExpectedScore(TestColours[4].R, TestColours[4].G, TestColours[4].B), read[1], 1e-4f);
    }

    [TestMethod]
    public void Transform_UsesTheBatchDecodedAheadAndIgnoresFailuresInRowsNeverRead()
    {
        var (mlContext, train, test, dir) = MakeData();
        // Rows 0–4 as before, then a file that does not exist: its batch is decoded ahead but never asked for.
        var rows = mlContext.Data.CreateEnumerable<ImagePathRow>(test, reuseRowObject: false)
            .Append(new ImagePathRow { ImagePath = Path.Combine(dir, "missing.png") }).ToArray();
        ToyTransformer model = new ToyEstimator(mlContext, new ToyOptions { InputColumnName = "ImagePath", ScoringBatchSize = 2 }).Fit(train);
        IDataView scored = model.Transform(mlContext.Data.LoadFromEnumerable(rows));
        using DataViewRowCursor cursor = scored.GetRowCursor([scored.Schema["Score"]]);
        ValueGetter<float> score = cursor.GetGetter<float>(scored.Schema["Score"]);
        var read = new Dictionary<long, float>();
        while (cursor.MoveNext() && cursor.Position <= 3)
        {
            // Row 0 (batch 0–1, then 2–3 decoded ahead), and row 3 from the batch decoded ahead; rows 1 and 2 passed over.
            if (cursor.Position is 0 or 3)
            {
                float value = 0;
                score(ref value);
                read[cursor.Position] = value;
            }
        }
        CollectionAssert.AreEqual(new[] { 2, 2 }, model.Batches.ToArray());
        Assert.AreEqual(ExpectedScore(TestColours[0].R, TestColours[0].G, TestColours[0].B), read[0], 1e-4f);
        Assert.AreEqual(ExpectedScore(TestColours[3].R, TestColours[3].G, TestColours[3].B), read[3], 1e-4f);

        // Reading on to the missing file fails there, naming it.
        var all = Assert.ThrowsExactly<InvalidDataException>(() => scored.GetColumn<float>("Score").ToArray());
        StringAssert.Contains(all.Message, "missing.png");
    }

    private sealed class Prediction
    {
        public float Score { get; set; }

        [VectorType(4 * 4)]
        public float[] AnomalyMap { get; set; } = [];

        public bool PredictedLabel { get; set; }
    }

    [TestMethod]
    public void PredictionEngine_AfterLoadWithThreshold_ScoresEachRow()
    {
        var (mlContext, train, test, dir) = MakeData();
        ToyTransformer fitted = new ToyEstimator(mlContext, new ToyOptions { InputColumnName = "ImagePath" }).Fit(train);
        float threshold = ExpectedScore(128, 128, 128);
        ImageAnomalyTransformerBase model = fitted.WithThreshold(threshold);
        Assert.IsNull(fitted.Threshold, "WithThreshold must not change the original");
        string path = Path.Combine(dir, "toy-threshold.zip");
        mlContext.Model.Save(model, test.Schema, path);

        var fresh = new MLContext();
        ITransformer loaded = fresh.Model.Load(path, out _);
        Assert.AreEqual(threshold, ((ImageAnomalyTransformerBase)loaded).Threshold);
        var engine = fresh.Model.CreatePredictionEngine<ImagePathRow, Prediction>(loaded);
        string[] paths = test.GetColumn<string>("ImagePath").ToArray();
        for (int i = 0; i < TestColours.Length; i++)
        {
            Prediction p = engine.Predict(new ImagePathRow { ImagePath = paths[i] });
            float expected = ExpectedScore(TestColours[i].R, TestColours[i].G, TestColours[i].B);
            Assert.AreEqual(expected, p.Score, 1e-4f, $"row {i}");
            Assert.AreEqual(16, p.AnomalyMap.Length);
            Assert.AreEqual(expected, p.AnomalyMap[5], 1e-4f);
            Assert.AreEqual(p.Score >= threshold, p.PredictedLabel, $"row {i}");
        }
    }

    [TestMethod]
    public void Pipeline_LoadImagesResizeImagesToy_RoundTrips()
    {
        var (mlContext, train, test, dir) = MakeData();
        var pipeline = mlContext.Transforms.LoadImages("Image", imageFolder: null, inputColumnName: "ImagePath")
            .Append(mlContext.Transforms.ResizeImages("Image", imageWidth: 8, imageHeight: 8))
            .Append(new ToyEstimator(mlContext, new ToyOptions { Size = 4, AnomalyMapColumnName = null, Threshold = 1f }));
        SchemaShape shape = pipeline.GetOutputSchema(SchemaShape.Create(test.Schema));
        Assert.IsTrue(shape.TryFindColumn("Score", out _));
        Assert.IsFalse(shape.TryFindColumn("AnomalyMap", out _));
        Assert.IsTrue(shape.TryFindColumn("PredictedLabel", out _));

        var model = pipeline.Fit(train);
        IDataView scored = model.Transform(test);
        Assert.IsNull(scored.Schema.GetColumnOrNull("AnomalyMap"));
        float[] before = Scores(scored);
        for (int i = 0; i < TestColours.Length; i++)
            Assert.AreEqual(ExpectedScore(TestColours[i].R, TestColours[i].G, TestColours[i].B), before[i], 1e-4f, $"row {i}");
        bool[] labels = scored.GetColumn<bool>("PredictedLabel").ToArray();
        CollectionAssert.AreEqual(before.Select(s => s >= 1f).ToArray(), labels);

        string path = Path.Combine(dir, "pipeline.zip");
        mlContext.Model.Save(model, test.Schema, path);
        ITransformer loaded = new MLContext().Model.Load(path, out _);
        CollectionAssert.AreEqual(before, Scores(loaded.Transform(test)));
    }

    [TestMethod]
    public void Load_NotAZip_ThrowsFormatError()
    {
        string dir = TestImages.NewDirectory();
        string path = Path.Combine(dir, "garbage.zip");
        File.WriteAllText(path, "this is not a model");
        var ex = Assert.ThrowsExactly<FormatException>(() => new MLContext().Model.Load(path, out _));
        StringAssert.Contains(ex.Message, "zip", StringComparison.OrdinalIgnoreCase);
    }

    [TestMethod]
    public void Load_TruncatedZip_ThrowsFormatError()
    {
        var (mlContext, train, test, dir) = MakeData();
        ToyTransformer model = new ToyEstimator(mlContext, new ToyOptions { InputColumnName = "ImagePath" }).Fit(train);
        string path = Path.Combine(dir, "toy.zip");
        mlContext.Model.Save(model, test.Schema, path);
        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        Assert.ThrowsExactly<FormatException>(() => new MLContext().Model.Load(path, out _));
    }

    [TestMethod]
    public void Load_DamagedDetectorStream_NamesTheStream()
    {
        var (mlContext, train, test, dir) = MakeData();
        ToyTransformer model = new ToyEstimator(mlContext, new ToyOptions { InputColumnName = "ImagePath" }).Fit(train);
        string path = Path.Combine(dir, "toy.zip");
        mlContext.Model.Save(model, test.Schema, path);
        using (ZipArchive zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            ZipArchiveEntry blob = zip.Entries.Single(e => e.FullName.EndsWith("ToyBlob", StringComparison.Ordinal));
            string name = blob.FullName;
            blob.Delete();
            using Stream s = zip.CreateEntry(name).Open();
            s.Write(BitConverter.GetBytes(1000L));   // claims 1000 bytes, holds none
        }
        // ML.NET calls loaders through reflection, so the loader's exception arrives as the inner exception.
        var ex = Assert.ThrowsExactly<System.Reflection.TargetInvocationException>(() => new MLContext().Model.Load(path, out _));
        Assert.IsInstanceOfType<FormatException>(ex.InnerException);
        StringAssert.Contains(ex.InnerException.Message, "Model stream 'ToyBlob' is corrupt");
    }

    [TestMethod]
    public void Load_ModelOfOtherDetector_IsNotAcceptedByWrongLoader()
    {
        var (mlContext, train, test, dir) = MakeData();
        var other = new OtherToyTransformer(mlContext, new ToyOptions { InputColumnName = "ImagePath" }, mean: 0.5f);
        string path = Path.Combine(dir, "other.zip");
        mlContext.Model.Save(other, test.Schema, path);

        // Plain loading picks the loader the model names.
        ITransformer loaded = new MLContext().Model.Load(path, out _);
        Assert.IsInstanceOfType<OtherToyTransformer>(loaded);
        Assert.IsNull(((ImageAnomalyTransformerBase)loaded).AnomalyMapColumnName);

        // Handing the model to the other detector's loader is refused.
        string modelKey;
        using (ZipArchive zip = ZipFile.OpenRead(path))
            modelKey = zip.Entries.Select(e => e.FullName).Single(n => n.EndsWith("Model.key", StringComparison.Ordinal) && n.Contains("Transform", StringComparison.Ordinal));
        string directory = modelKey[..modelKey.LastIndexOfAny(['/', '\\'])];
        var env = new MLContext();
        using FileStream stream = File.OpenRead(path);
        using RepositoryReader repository = RepositoryReader.Open(stream, env);
        using Repository.Entry entry = repository.OpenEntry(directory, "Model.key");
        var ctx = new ModelLoadContext(repository, entry, directory);
        var ex = Assert.ThrowsExactly<FormatException>(() => ToyTransformer.Create(env, ctx));
        Assert.IsFalse(string.IsNullOrEmpty(ex.Message));
    }
}
