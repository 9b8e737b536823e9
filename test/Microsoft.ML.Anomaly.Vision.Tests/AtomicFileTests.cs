using Microsoft.ML.Anomaly.Vision.Tests.Detectors;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

namespace Microsoft.ML.Anomaly.Vision.Tests;

/// <summary>A failed save never destroys the file it was to replace.</summary>
[TestClass]
public sealed class AtomicFileTests
{
    [TestMethod]
    public void AWriteThatFailsHalfwayLeavesThePreviousFileAndNoTemporaryFile()
    {
        string folder = TestImages.NewDirectory();
        string path = Path.Combine(folder, "model.zip");
        File.WriteAllBytes(path, [1, 2, 3]);
        var ex = Assert.ThrowsExactly<IOException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[1 << 20]);
            throw new IOException("No space left on device");
        }));
        StringAssert.Contains(ex.Message, "No space left");
        CollectionAssert.AreEqual(new byte[] { 1, 2, 3 }, File.ReadAllBytes(path));
        CollectionAssert.AreEqual(new[] { path }, Directory.GetFiles(folder));
    }

    [TestMethod]
    public void SaveAtomicallyReplacesAModelWithOneThatLoadsAndScoresTheSame()
    {
        string resources = Path.Combine(AppContext.BaseDirectory, "Resources", "LegacyModels", "v1.1");
        var ml = new MLContext(seed: 1);
        ITransformer model = ml.Model.Load(Path.Combine(resources, "cfa.zip"), out DataViewSchema schema);
        IDataView test = ml.Data.LoadFromEnumerable(Directory.GetFiles(Path.Combine(resources, "images"), "*.png", SearchOption.AllDirectories)
            .Order(StringComparer.Ordinal).Select(p => new ImagePathRow { ImagePath = p }));
        string folder = TestImages.NewDirectory();
        string path = Path.Combine(folder, "cfa.zip");
        File.WriteAllText(path, "an older file");
        ml.Model.SaveAtomically(model, schema, path);
        CollectionAssert.AreEqual(new[] { path }, Directory.GetFiles(folder));
        var fresh = new MLContext();
        ITransformer loaded = fresh.Model.Load(path, out _);
        float[] scores = DetectorPersistenceTests.Scores(ml, model.Transform(test));
        Assert.HasCount(6, scores);
        CollectionAssert.AreEqual(scores, DetectorPersistenceTests.Scores(fresh, loaded.Transform(test)));
        (model as IDisposable)?.Dispose();
        (loaded as IDisposable)?.Dispose();
    }

    [TestMethod]
    public void ADirectoryIsNotOverwritten()
    {
        string folder = TestImages.NewDirectory();
        var ex = Assert.ThrowsExactly<ArgumentException>(() => AtomicFile.WriteAllText(folder, "x"));
        StringAssert.Contains(ex.Message, "is a directory");
    }
}
