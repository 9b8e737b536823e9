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
        var ml = new MLContext(seed: 1);
        IDataView train = DetectorFixture.Train(ml);
        using var model = (DfmTransformer)DetectorFixture.Estimator(ml, "dfm-fre").Fit(train);
        string folder = TestImages.NewDirectory();
        string path = Path.Combine(folder, "dfm.zip");
        File.WriteAllText(path, "an older file");
        ml.Model.SaveAtomically(model, train.Schema, path);
        CollectionAssert.AreEqual(new[] { path }, Directory.GetFiles(folder));
        var fresh = new MLContext();
        using var loaded = (DfmTransformer)fresh.Model.Load(path, out _);
        CollectionAssert.AreEqual(DetectorPersistenceTests.Scores(ml, model.Transform(DetectorFixture.Test(ml))),
            DetectorPersistenceTests.Scores(fresh, loaded.Transform(DetectorFixture.Test(fresh))));
    }

    [TestMethod]
    public void ADirectoryIsNotOverwritten()
    {
        string folder = TestImages.NewDirectory();
        var ex = Assert.ThrowsExactly<ArgumentException>(() => AtomicFile.WriteAllText(folder, "x"));
        StringAssert.Contains(ex.Message, "is a directory");
    }
}
