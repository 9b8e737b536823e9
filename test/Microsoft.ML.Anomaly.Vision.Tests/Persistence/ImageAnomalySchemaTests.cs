using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Data;

namespace Microsoft.ML.Anomaly.Vision.Tests.Persistence;

[TestClass]
public sealed class ImageAnomalySchemaTests
{
    private sealed class NumberRow
    {
        public float Image { get; set; }
    }

    private static (MLContext Context, IDataView Numbers) Numbers()
    {
        var mlContext = new MLContext();
        return (mlContext, mlContext.Data.LoadFromEnumerable(new[] { new NumberRow { Image = 3 } }));
    }

    [TestMethod]
    public void Transformer_WrongColumnType_NamesColumnAndType()
    {
        var (mlContext, numbers) = Numbers();
        var toy = new ToyTransformer(mlContext, new ToyOptions(), mean: 0f);
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => toy.Transform(numbers));
        StringAssert.Contains(ex.Message, "'Image'");
        StringAssert.Contains(ex.Message, "Single");
        var schemaEx = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => toy.GetOutputSchema(numbers.Schema));
        StringAssert.Contains(schemaEx.Message, "'Image'");
    }

    [TestMethod]
    public void Estimator_WrongColumnType_NamesColumnAndType()
    {
        var (mlContext, numbers) = Numbers();
        var estimator = new ToyEstimator(mlContext, new ToyOptions());
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(SchemaShape.Create(numbers.Schema)));
        StringAssert.Contains(ex.Message, "'Image'");
        StringAssert.Contains(ex.Message, "Single");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => estimator.Fit(numbers));
    }

    [TestMethod]
    public void Estimator_MissingColumn_NamesColumn()
    {
        var (mlContext, numbers) = Numbers();
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() =>
            new ToyEstimator(mlContext, new ToyOptions { InputColumnName = "Photo" }).GetOutputSchema(SchemaShape.Create(numbers.Schema)));
        StringAssert.Contains(ex.Message, "'Photo'");
    }

    [TestMethod]
    public void Options_Invalid_ThrowArgumentExceptionNamingTheSetting()
    {
        var mlContext = new MLContext();
        var ex = Assert.ThrowsExactly<ArgumentException>(() => new ToyEstimator(mlContext, new ToyOptions { ScoreColumnName = "" }));
        StringAssert.Contains(ex.Message, "ScoreColumnName");
        Assert.AreEqual("options", ex.ParamName);
        ex = Assert.ThrowsExactly<ArgumentException>(() => new ToyEstimator(mlContext, new ToyOptions { Threshold = float.NaN }));
        StringAssert.Contains(ex.Message, "Threshold");
        ex = Assert.ThrowsExactly<ArgumentException>(() => new ToyEstimator(mlContext, new ToyOptions { ScoringBatchSize = 0 }));
        StringAssert.Contains(ex.Message, "ScoringBatchSize");
        ex = Assert.ThrowsExactly<ArgumentException>(() => new ToyEstimator(mlContext, new ToyOptions { AnomalyMapColumnName = "Score" }));
        StringAssert.Contains(ex.Message, "differ");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ToyTransformer(mlContext, new ToyOptions(), 0f).WithThreshold(float.PositiveInfinity));
    }

    [TestMethod]
    public void TextPathColumn_MissingFile_NamesRowAndPathWhenScored()
    {
        var mlContext = new MLContext();
        string missing = Path.Combine(TestImages.NewDirectory(), "missing.png");
        IDataView data = mlContext.Data.LoadFromEnumerable(new[] { new ImagePathRow { ImagePath = missing } });
        var toy = new ToyTransformer(mlContext, new ToyOptions { InputColumnName = "ImagePath" }, 0f);
        IDataView scored = toy.Transform(data);   // lazy: no error yet
        var ex = Assert.ThrowsExactly<InvalidDataException>(() => scored.GetColumn<float>("Score").ToArray());
        StringAssert.Contains(ex.Message, "Row 0");
        StringAssert.Contains(ex.Message, missing);
    }
}
