using Anomaly.Vision.Training;
using Anomaly.Vision.Training.Tests.Cfa;

namespace Anomaly.Vision.Training.Tests.Features;

[TestClass]
public sealed class FeatureStoreTests
{
    private static readonly LayerShape[] Layers = CfaTestData.TinyLayers;     // 512 + 64 values per image
    private const long ImageBytes32 = (512 + 64) * 4;

    private static string TempDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), "feature-store-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static FeatureStore Fill(float[][][] maps, FeatureStorePrecision precision, long limit, string? dir)
    {
        var store = new FeatureStore(Layers, precision, limit, dir);
        foreach (var image in maps)
            store.Add(image);
        return store;
    }

    private static void AssertReads(IFeatureSource source, float[][][] expected, Func<float, float> convert)
    {
        Assert.AreEqual(expected.Length, source.Count);
        for (int i = expected.Length - 1; i >= 0; i--)           // any order
            for (int l = 0; l < Layers.Length; l++)
            {
                var buffer = new float[Layers[l].Size];
                source.Read(i, l, buffer);
                CollectionAssert.AreEqual(expected[i][l].Select(convert).ToArray(), buffer, $"image {i} layer {l}");
            }
    }

    [TestMethod]
    public void Float32InMemoryReturnsTheAddedValues()
    {
        var maps = CfaTestData.Maps(4, seed: 20);
        using var store = Fill(maps, FeatureStorePrecision.Float32, 1L << 30, null);
        Assert.AreEqual(4, store.InMemoryCount);
        Assert.AreEqual(0, store.SpilledCount);
        Assert.AreEqual(4 * ImageBytes32, store.MemoryBytes);
        Assert.IsNull(store.SpillFilePath);
        maps[0][0][0] = 99f;                                      // the store copied the values
        AssertReads(store, CfaTestData.Maps(4, seed: 20), v => v);
    }

    [TestMethod]
    public void Float16HalvesTheMemoryAndRoundsToHalf()
    {
        var maps = CfaTestData.Maps(3, seed: 21);
        using var store = Fill(maps, FeatureStorePrecision.Float16, 1L << 30, null);
        Assert.AreEqual(3 * ImageBytes32 / 2, store.MemoryBytes);
        AssertReads(store, maps, v => (float)(Half)v);
        var buffer = new float[512];
        store.Read(0, 0, buffer);
        Assert.AreNotEqual(maps[0][0][1], buffer[1], "values are really rounded");
    }

    [TestMethod]
    public void ImagesPastTheLimitSpillToATemporaryFileThatLivesNoLongerThanTheStore()
    {
        foreach (var precision in new[] { FeatureStorePrecision.Float32, FeatureStorePrecision.Float16 })
        {
            string dir = TempDirectory();
            try
            {
                var maps = CfaTestData.Maps(5, seed: 22);
                long imageBytes = precision == FeatureStorePrecision.Float32 ? ImageBytes32 : ImageBytes32 / 2;
                var store = Fill(maps, precision, 2 * imageBytes + 1, dir);
                Assert.AreEqual(2, store.InMemoryCount);
                Assert.AreEqual(3, store.SpilledCount);
                Assert.IsNotNull(store.SpillFilePath);
                Assert.AreEqual(dir, Path.GetDirectoryName(store.SpillFilePath));
                if (OperatingSystem.IsWindows())
                {
                    Assert.AreEqual(3 * imageBytes, new FileInfo(store.SpillFilePath).Length);
                }
                else
                {
                    // The name is gone while the store still reads the file: a process killed now leaves nothing behind.
                    Assert.IsFalse(File.Exists(store.SpillFilePath), "the spill file's name is removed once it is open");
                    CollectionAssert.AreEqual(Array.Empty<string>(), Directory.GetFileSystemEntries(dir));
                }
                AssertReads(store, maps, precision == FeatureStorePrecision.Float32 ? v => v : v => (float)(Half)v);

                string path = store.SpillFilePath;
                store.Dispose();
                Assert.IsFalse(File.Exists(path));
                Assert.ThrowsExactly<ObjectDisposedException>(() => store.Read(0, 0, new float[512]));
            }
            finally
            {
                Directory.Delete(dir, true);
            }
        }
    }

    [TestMethod]
    public void ConcurrentReadsOfSpilledImagesAreCorrect()
    {
        string dir = TempDirectory();
        try
        {
            var maps = CfaTestData.Maps(8, seed: 23);
            using var store = Fill(maps, FeatureStorePrecision.Float32, 0, dir);
            Assert.AreEqual(8, store.SpilledCount);
            Parallel.For(0, 64, k =>
            {
                int i = k % 8, l = k / 8 % 2;
                var buffer = new float[Layers[l].Size];
                store.Read(i, l, buffer);
                CollectionAssert.AreEqual(maps[i][l], buffer);
            });
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [TestMethod]
    public void BadArgumentsAreRejected()
    {
        Assert.AreEqual("layers", Assert.ThrowsExactly<ArgumentException>(() => new FeatureStore(Array.Empty<LayerShape>())).ParamName);
        Assert.AreEqual("layers", Assert.ThrowsExactly<ArgumentException>(() => new FeatureStore(new[] { new LayerShape(1, 0, 2) })).ParamName);
        Assert.AreEqual("memoryLimitBytes", Assert.ThrowsExactly<ArgumentException>(() => new FeatureStore(Layers, memoryLimitBytes: -1)).ParamName);
        Assert.AreEqual("precision", Assert.ThrowsExactly<ArgumentException>(() => new FeatureStore(Layers, (FeatureStorePrecision)7)).ParamName);
        using var store = new FeatureStore(Layers);
        Assert.AreEqual("maps", Assert.ThrowsExactly<ArgumentException>(() => store.Add(new[] { new float[512] })).ParamName);
        Assert.AreEqual("maps", Assert.ThrowsExactly<ArgumentException>(() => store.Add(new[] { new float[512], new float[65] })).ParamName);
        store.Add(new[] { new float[512], new float[64] });
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => store.Read(1, 0, new float[512]));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => store.Read(0, 2, new float[512]));
        Assert.AreEqual("destination", Assert.ThrowsExactly<ArgumentException>(() => store.Read(0, 0, new float[511])).ParamName);
    }

    [TestMethod]
    public void TrainingFromEveryStorageEqualsTrainingFromArraysInMemory()
    {
        var maps = CfaTestData.Maps(6, seed: 24);
        var options = CfaTestData.Options(epochs: 2);
        var reference = CfaTrainer.Train(CfaTestData.Source(maps), options);
        string dir = TempDirectory();
        try
        {
            // Float32, in memory and fully or partly spilled: exactly the same model.
            foreach (long limit in new[] { 1L << 30, 0L, 3 * ImageBytes32 })
            {
                using var store = Fill(maps, FeatureStorePrecision.Float32, limit, dir);
                var model = CfaTrainer.Train(store, options);
                CollectionAssert.AreEqual(reference.DescriptorWeight.ToArray(), model.DescriptorWeight.ToArray(), $"limit {limit}");
                CollectionAssert.AreEqual(reference.DescriptorBias.ToArray(), model.DescriptorBias.ToArray(), $"limit {limit}");
                CollectionAssert.AreEqual(reference.MemoryBank.ToArray(), model.MemoryBank.ToArray(), $"limit {limit}");
            }

            // Float16 (in memory and spilled): exactly training on half-rounded arrays, and close to the float32 model.
            var rounded = maps.Select(image => image.Select(map => map.Select(v => (float)(Half)v).ToArray()).ToArray()).ToArray();
            var roundedReference = CfaTrainer.Train(CfaTestData.Source(rounded), options);
            foreach (long limit in new[] { 1L << 30, 0L })
            {
                using var store = Fill(maps, FeatureStorePrecision.Float16, limit, dir);
                var model = CfaTrainer.Train(store, options);
                CollectionAssert.AreEqual(roundedReference.DescriptorWeight.ToArray(), model.DescriptorWeight.ToArray());
                CollectionAssert.AreEqual(roundedReference.MemoryBank.ToArray(), model.MemoryBank.ToArray());
                var w = model.DescriptorWeight.ToArray();
                var r = reference.DescriptorWeight.ToArray();
                for (int i = 0; i < w.Length; i++)
                    Assert.AreEqual(r[i], w[i], 2e-3f, $"weight {i}");
                var b = model.MemoryBank.ToArray();
                var rb = reference.MemoryBank.ToArray();
                for (int i = 0; i < b.Length; i++)
                    Assert.AreEqual(rb[i], b[i], 2e-3f, $"bank {i}");
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
