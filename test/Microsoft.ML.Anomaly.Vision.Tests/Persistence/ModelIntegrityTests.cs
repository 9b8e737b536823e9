using System.Globalization;
using System.IO.Compression;
using System.Reflection;
using Microsoft.ML.Anomaly.Vision.Tests.Detectors;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

namespace Microsoft.ML.Anomaly.Vision.Tests.Persistence;

/// <summary>A damaged model never loads: every model stream carries a checksum that is checked before its bytes are used.</summary>
[TestClass]
public sealed class ModelIntegrityTests
{
    private static readonly Lazy<(string Zip, float[] Scores)> SavedCfa = new(() =>
    {
        var ml = new MLContext(seed: 1);
        IDataView train = DetectorFixture.Train(ml);
        using var model = (CfaTransformer)DetectorFixture.Estimator(ml, "cfa").Fit(train);
        string zip = Path.Combine(TestImages.NewDirectory(), "cfa.zip");
        ml.Model.Save(model, train.Schema, zip);
        return (zip, DetectorPersistenceTests.Scores(ml, model.Transform(DetectorFixture.Test(ml))));
    });

    [TestMethod]
    [DataRow("Cfa.bin", 0.5)]
    [DataRow("Cfa.bin", 0.9)]
    [DataRow("Backbone.onnx", 0.02)]
    [DataRow("Backbone.onnx", 0.15)]
    public void FlippedBytesInAModelStreamFailTheLoadNamingTheStream(string stream, double at)
    {
        string damaged = CopyWithEntryChanged(SavedCfa.Value.Zip, stream, bytes => Flip(bytes, (int)(bytes.Length * at), 4));
        FormatException error = LoadError(damaged);
        StringAssert.Contains(error.Message, $"'{stream}'");
        StringAssert.Contains(error.Message, "damaged");
    }

    [TestMethod]
    [DataRow("Backbone.onnx", "the model's fields record")]
    [DataRow("Cfa.bin", "damaged")]
    public void AnEntryInflatedWithFillerFailsBeforeItIsReadIntoMemory(string stream, string expected)
    {
        // The stream's recorded length says 192 MiB and that much filler follows (a zip entry of a few hundred KiB):
        // the load must fail before an array of that size is allocated.
        const long Inflated = 192L << 20;
        string bomb = CopyWithEntryWritten(SavedCfa.Value.Zip, stream, output =>
        {
            output.Write(BitConverter.GetBytes(Inflated));
            var zeros = new byte[1 << 20];
            for (long left = Inflated + 32; left > 0; left -= zeros.Length)
                output.Write(zeros, 0, (int)Math.Min(zeros.Length, left));
        });
        long baseline = AllocatedBy(() => new MLContext().Model.Load(SavedCfa.Value.Zip, out _));

        FormatException? error = null;
        long allocated = AllocatedBy(() => error = LoadError(bomb));
        StringAssert.Contains(error!.Message, $"'{stream}'");
        StringAssert.Contains(error.Message, expected);
        // The backbone is the first stream read; the algorithm's comes after a whole backbone.
        long bound = (stream == "Backbone.onnx" ? 0 : baseline) + Inflated / 2;
        Assert.IsLessThan(bound, allocated, $"bytes allocated while loading the inflated model (an undamaged load allocates {baseline})");
    }

    private static long AllocatedBy(Action action)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    /// <summary>Copies <paramref name="zip"/> with one entry's bytes written anew by <paramref name="write"/>, deflated.</summary>
    private static string CopyWithEntryWritten(string zip, string entryNameEnd, Action<Stream> write)
    {
        string copy = Path.Combine(TestImages.NewDirectory(), Path.GetFileName(zip));
        using ZipArchive source = ZipFile.OpenRead(zip);
        string target = source.Entries.Single(e => e.FullName.EndsWith(entryNameEnd, StringComparison.Ordinal)).FullName;
        using ZipArchive destination = ZipFile.Open(copy, ZipArchiveMode.Create);
        foreach (ZipArchiveEntry entry in source.Entries)
        {
            using Stream output = destination.CreateEntry(entry.FullName, CompressionLevel.Fastest).Open();
            if (entry.FullName == target)
            {
                write(output);
                continue;
            }
            using Stream input = entry.Open();
            input.CopyTo(output);
        }
        return copy;
    }

    [TestMethod]
    public void AFlippedByteInTheTransformersOwnFieldsFailsTheLoad()
    {
        // The input column name is one of the transformer's fields; a flipped letter would silently rename the column.
        string damaged = CopyWithEntryChanged(SavedCfa.Value.Zip, "Model.key", bytes =>
        {
            int at = bytes.AsSpan().IndexOf("ImagePath"u8);
            Assert.IsGreaterThanOrEqualTo(0, at, "the column name is stored in the transformer's stream");
            bytes[at] ^= 0x01;
        });
        FormatException error = LoadError(damaged);
        StringAssert.Contains(error.Message, "CfaTransformer model");
    }

    [TestMethod]
    public void ABitFlippedInTheRawZipFailsTheLoad()
    {
        // At three quarters of the zip the bit lies in the deflated backbone; ML.NET does not check the zip's CRCs, so
        // without the library's own checksum such a model loads.
        string damaged = Path.Combine(TestImages.NewDirectory(), "cfa.zip");
        byte[] bytes = File.ReadAllBytes(SavedCfa.Value.Zip);
        bytes[bytes.Length / 4 * 3] ^= 0x10;
        File.WriteAllBytes(damaged, bytes);
        Exception error = Assert.Throws<Exception>(() => new MLContext().Model.Load(damaged, out _));
        Exception cause = error is TargetInvocationException { InnerException: { } inner } ? inner : error;
        Assert.IsTrue(cause is FormatException or InvalidDataException, $"{cause.GetType().Name}: {cause.Message}");
    }

    [TestMethod]
    public void AnUndamagedModelLoadsAndScoresAsSaved()
    {
        var ml = new MLContext();
        using var loaded = (CfaTransformer)ml.Model.Load(SavedCfa.Value.Zip, out _);
        CollectionAssert.AreEqual(SavedCfa.Value.Scores, DetectorPersistenceTests.Scores(ml, loaded.Transform(DetectorFixture.Test(ml))));
    }

    [TestMethod]
    [DataRow("cfa")]
    [DataRow("dfm")]
    [DataRow("cflow")]
    public void ModelsSavedInFormat1_1LoadAndScoreAsTheyDidThen(string detector)
    {
        string folder = Path.Combine(AppContext.BaseDirectory, "Resources", "LegacyModels", "v1.1");
        var expected = File.ReadAllLines(Path.Combine(folder, "scores.tsv")).Select(line => line.Split('\t'))
            .Where(fields => fields[0] == detector)
            .Select(fields => (Path: Path.Combine(folder, "images", fields[1]), Score: float.Parse(fields[2], CultureInfo.InvariantCulture)))
            .ToArray();
        Assert.HasCount(6, expected);

        var ml = new MLContext();
        ITransformer model = ml.Model.Load(Path.Combine(folder, detector + ".zip"), out _);
        IDataView test = ml.Data.LoadFromEnumerable(expected.Select(e => new ImagePathRow { ImagePath = e.Path }));
        float[] scores = DetectorPersistenceTests.Scores(ml, model.Transform(test));
        // The scoring kernels may change the order of float sums between versions: equal up to rounding.
        Assert.HasCount(expected.Length, scores);
        for (int i = 0; i < scores.Length; i++)
            Assert.AreEqual(expected[i].Score, scores[i], 1e-5f * Math.Max(1f, Math.Abs(expected[i].Score)), $"image {expected[i].Path}");
        if (detector == "cfa")
            Assert.AreEqual(0.5f, ((ImageAnomalyTransformerBase)model).Threshold);
        (model as IDisposable)?.Dispose();
    }

    [TestMethod]
    public void AFormat1_1ModelWithAFlippedByteStillFailsItsOwnChecks()
    {
        // Format 1.1 has no checksums: damage is caught only where a value is out of range, as before.
        string legacy = Path.Combine(AppContext.BaseDirectory, "Resources", "LegacyModels", "v1.1", "dfm.zip");
        string damaged = CopyWithEntryChanged(legacy, "Dfm.bin", bytes => Flip(bytes, 4, 4));   // the layer count
        FormatException error = LoadError(damaged);
        StringAssert.Contains(error.Message, "'Dfm.bin'");
    }

    internal static FormatException LoadError(string zip)
    {
        Exception error = Assert.Throws<Exception>(() => new MLContext().Model.Load(zip, out _));
        // ML.NET calls a loader through reflection, so the loader's exception arrives as the inner exception.
        Exception cause = error is TargetInvocationException { InnerException: { } inner } ? inner : error;
        Assert.IsInstanceOfType<FormatException>(cause, $"{cause.GetType().Name}: {cause.Message}");
        return (FormatException)cause;
    }

    /// <summary>Copies <paramref name="zip"/> with one entry's bytes changed (a new archive, so every entry's CRC is valid).</summary>
    internal static string CopyWithEntryChanged(string zip, string entryNameEnd, Action<byte[]> change)
    {
        string copy = Path.Combine(TestImages.NewDirectory(), Path.GetFileName(zip));
        using ZipArchive source = ZipFile.OpenRead(zip);
        // The detector's own entries sit in the folder of its model stream: prefer the entry beside a .bin stream.
        string target = source.Entries.Select(e => e.FullName).Where(n => n.EndsWith(entryNameEnd, StringComparison.Ordinal))
            .OrderBy(n => source.Entries.Any(other => other.FullName.EndsWith(".bin", StringComparison.Ordinal)
                && Path.GetDirectoryName(other.FullName) == Path.GetDirectoryName(n)) ? 0 : 1)
            .First();
        using (ZipArchive destination = ZipFile.Open(copy, ZipArchiveMode.Create))
        {
            foreach (ZipArchiveEntry entry in source.Entries)
            {
                byte[] bytes;
                using (var stream = entry.Open())
                using (var buffer = new MemoryStream())
                {
                    stream.CopyTo(buffer);
                    bytes = buffer.ToArray();
                }
                if (entry.FullName == target)
                    change(bytes);
                using var output = destination.CreateEntry(entry.FullName, CompressionLevel.NoCompression).Open();
                output.Write(bytes);
            }
        }
        return copy;
    }

    private static void Flip(byte[] bytes, int at, int count)
    {
        for (int i = at; i < Math.Min(at + count, bytes.Length); i++)
            bytes[i] ^= 0xFF;
    }
}
