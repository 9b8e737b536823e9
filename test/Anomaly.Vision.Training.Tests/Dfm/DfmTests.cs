using Anomaly.Vision.Training;

namespace Anomaly.Vision.Training.Tests.Dfm;

[TestClass]
public sealed class DfmTests
{
    // Training set of 8 points in 4-D: m ± a_i e_i. The centred matrix has squared singular values 2·a_i²,
    // so with a² = 0.6, 0.3, 0.08, 0.02 the explained-variance ratios are exactly 0.6, 0.3, 0.08, 0.02.
    private static readonly float[] Offset = { 0.5f, -1f, 2f, 3f };
    private static readonly double[] AxisVariance = { 0.6, 0.3, 0.08, 0.02 };

    private static float[] AxisPoint(int axis, int sign, float[] offset)
    {
        var p = (float[])offset.Clone();
        p[axis] += (float)(sign * Math.Sqrt(AxisVariance[axis]));
        return p;
    }

    /// <summary>The 8 axis points, as maps of shape (2, 1, 2): CHW flattening maps (c, w) to index 2c + w.</summary>
    private static InMemoryFeatureSource AxisSource(float[]? offset = null, Func<float[], float[]>? transform = null)
    {
        offset ??= Offset;
        var source = new InMemoryFeatureSource(new[] { new LayerShape(2, 1, 2) });
        for (int axis = 0; axis < 4; axis++)
            foreach (int sign in new[] { 1, -1 })
            {
                var p = AxisPoint(axis, sign, offset);
                source.Add(transform == null ? p : transform(p));
            }
        return source;
    }

    private static float[] Add(float[] a, float[] b) => a.Select((v, i) => v + b[i]).ToArray();

    // Orthogonal 4×4: the Hadamard matrix divided by 2.
    private static float[] Rotate(float[] p)
    {
        int[,] h = { { 1, 1, 1, 1 }, { 1, -1, 1, -1 }, { 1, 1, -1, -1 }, { 1, -1, -1, 1 } };
        var r = new float[4];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                r[i] += 0.5f * h[i, j] * p[j];
        return r;
    }

    private static DfmTrainingOptions Options(float share = 0.97f, DfmScoreType type = DfmScoreType.Fre, int kernel = 1) =>
        new() { PoolingKernelSize = kernel, VarianceShare = share, ScoreType = type, Device = ComputeDevice.Cpu };

    [TestMethod]
    public void ComponentCountIsTheFirstIndexReachingTheShare()
    {
        double[] s = AxisVariance.Select(Math.Sqrt).ToArray();   // cumulative ratios 0.6, 0.9, 0.98, 1.0
        Assert.AreEqual(2, Pca.ComponentCountFor(s, 0.97));       // 3 components reach 97 %, the index is 2
        Assert.AreEqual(1, Pca.ComponentCountFor(s, 0.85));
        Assert.AreEqual(0, Pca.ComponentCountFor(s, 0.5));
        Assert.AreEqual(3, Pca.ComponentCountFor(s, 0.99));
        Assert.AreEqual(3, Pca.ComponentCountFor(s, 1.0));
        Assert.AreEqual(2, Pca.ComponentCountFor(s, 2.0));
        Assert.AreEqual(3, Pca.ComponentCountFor(s, 3.7));
    }

    [TestMethod]
    public void FitKeepsTheComponentCountOfTheKnownSpectrum()
    {
        Assert.AreEqual(2, DfmTrainer.Fit(AxisSource(transform: Rotate), Options(0.97f)).ComponentCount);
        Assert.AreEqual(1, DfmTrainer.Fit(AxisSource(transform: Rotate), Options(0.85f)).ComponentCount);
        Assert.AreEqual(0, DfmTrainer.Fit(AxisSource(transform: Rotate), Options(0.5f)).ComponentCount);
        Assert.AreEqual(3, DfmTrainer.Fit(AxisSource(transform: Rotate), Options(0.99f)).ComponentCount);
        Assert.AreEqual(3, DfmTrainer.Fit(AxisSource(transform: Rotate), Options(3f)).ComponentCount);
    }

    [TestMethod]
    public void FreScoreAndMapMatchHandComputation()
    {
        var model = DfmTrainer.Fit(AxisSource(), Options(0.97f));
        Assert.AreEqual(2, model.ComponentCount);
        Assert.AreEqual(1, model.PooledHeight);
        Assert.AreEqual(2, model.PooledWidth);
        // x = m + (1, 2, 3, 4): the first two axes are reconstructed, the residual is (0, 0, 3, 4).
        var x = Add(Offset, new[] { 1f, 2f, 3f, 4f });
        var map = new float[2];
        float score = model.Score(x, map);
        Assert.AreEqual(25f, score, 1e-4f);
        // Position w=0 holds dims 0 (c0) and 2 (c1): 0 + 9; position w=1 dims 1 and 3: 0 + 16.
        Assert.AreEqual(9f, map[0], 1e-4f);
        Assert.AreEqual(16f, map[1], 1e-4f);
        // A training point is reconstructed only when it lies on a kept axis.
        Assert.AreEqual(0f, model.Score(AxisPoint(0, 1, Offset), Span<float>.Empty), 1e-5f);
        Assert.AreEqual(0.08f, model.Score(AxisPoint(2, -1, Offset), Span<float>.Empty), 1e-5f);
    }

    [TestMethod]
    public void FreScoreIsRotationInvariant()
    {
        var model = DfmTrainer.Fit(AxisSource(transform: Rotate), Options(0.97f));
        var x = Rotate(Add(Offset, new[] { 1f, 2f, 3f, 4f }));
        Assert.AreEqual(25f, model.Score(x, Span<float>.Empty), 1e-4f);
    }

    [TestMethod]
    public void NllScoreMatchesHandComputation()
    {
        var model = DfmTrainer.Fit(AxisSource(transform: Rotate), Options(0.97f, DfmScoreType.Nll));
        Assert.AreEqual(DfmScoreType.Nll, model.ScoreType);
        Assert.AreEqual(2, model.ComponentCount);
        // Projections along the kept axes have variance 2·0.6/8 = 0.15 and 2·0.3/8 = 0.075 (S² of the 1/√N-scaled
        // data). The Gaussian is fitted to (x − m)·V, so a point x = m + (1, 2, 3, 4) is measured by its deviation's
        // coordinates along the kept axes, (1, 2).
        var x = Rotate(Add(Offset, new[] { 1f, 2f, 3f, 4f }));
        double expected = 1.0 * 1.0 / 0.15 + 2.0 * 2.0 / 0.075 + Math.Log(0.15) + Math.Log(0.075);
        Assert.AreEqual(expected, model.Score(x, Span<float>.Empty), 1e-3);
        // The training mean sits at the Gaussian's mean: only the log-determinant remains.
        var mean = Rotate(Offset);
        Assert.AreEqual(Math.Log(0.15) + Math.Log(0.075), model.Score(mean, Span<float>.Empty), 1e-3);
    }

    [TestMethod]
    public void PoolingAveragesNonOverlappingWindowsAndDropsTheRemainder()
    {
        var shape = new LayerShape(2, 5, 5);
        var map = Enumerable.Range(0, shape.Size).Select(i => (float)i).ToArray();
        var pooled = new float[2 * 2 * 2];
        DfmPooling.Pool(map, shape, 2, pooled);
        // Channel 0: windows {0,1,5,6}, {2,3,7,8}, {10,11,15,16}, {12,13,17,18}; channel 1 adds 25.
        CollectionAssert.AreEqual(new[] { 3f, 5f, 13f, 15f, 28f, 30f, 38f, 40f }, pooled);
        Assert.AreEqual(2, DfmPooling.PooledSize(5, 2));
    }

    private static InMemoryFeatureSource RandomSource(LayerShape shape, int count, int seed)
    {
        var random = new Random(seed);
        var source = new InMemoryFeatureSource(new[] { shape });
        for (int i = 0; i < count; i++)
            source.Add(Enumerable.Range(0, shape.Size).Select(_ => (float)random.NextDouble()).ToArray());
        return source;
    }

    [TestMethod]
    public void FreMapSumsToScore()
    {
        var shape = new LayerShape(3, 8, 6);
        var model = DfmTrainer.Fit(RandomSource(shape, 12, 1), Options(0.9f, kernel: 2));
        Assert.AreEqual(4, model.PooledHeight);
        Assert.AreEqual(3, model.PooledWidth);
        var test = RandomSource(shape, 1, 2);
        var x = new float[shape.Size];
        test.Read(0, 0, x);
        var map = new float[12];
        float score = model.Score(x, map);
        Assert.IsGreaterThan(0f, score);
        Assert.AreEqual(score, map.Sum(), 1e-4f * score);
    }

    private static DfmModel RoundTrip(DfmModel model)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
            model.Write(writer);
        stream.Position = 0;
        using var reader = new BinaryReader(stream);
        return DfmModel.Read(reader);
    }

    [TestMethod]
    [DataRow(DfmScoreType.Fre)]
    [DataRow(DfmScoreType.Nll)]
    public void WriteReadRoundTripKeepsScores(DfmScoreType type)
    {
        var shape = new LayerShape(2, 4, 4);
        var model = DfmTrainer.Fit(RandomSource(shape, 20, 3), Options(0.8f, type, kernel: 2));
        var copy = RoundTrip(model);
        Assert.AreEqual(model.Layer, copy.Layer);
        Assert.AreEqual(model.PoolingKernelSize, copy.PoolingKernelSize);
        Assert.AreEqual(model.ComponentCount, copy.ComponentCount);
        Assert.AreEqual(model.ScoreType, copy.ScoreType);
        var test = RandomSource(shape, 3, 4);
        var x = new float[shape.Size];
        for (int i = 0; i < 3; i++)
        {
            test.Read(i, 0, x);
            float[] m1 = new float[4], m2 = new float[4];
            Assert.AreEqual(model.Score(x, m1), copy.Score(x, m2));
            CollectionAssert.AreEqual(m1, m2);
        }
    }

    private static byte[] Serialize(DfmModel model)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream))
            model.Write(writer);
        return stream.ToArray();
    }

    private static string ReadFails(byte[] bytes)
    {
        using var reader = new BinaryReader(new MemoryStream(bytes));
        return Assert.ThrowsExactly<FormatException>(() => DfmModel.Read(reader)).Message;
    }

    [TestMethod]
    public void CorruptPayloadThrowsInvalidData()
    {
        var bytes = Serialize(DfmTrainer.Fit(AxisSource(), Options(0.97f, DfmScoreType.Nll)));
        // Header: signature, version, score type, C, H, W, kernel, K (8 int32), then the 4 mean floats.
        StringAssert.Contains(ReadFails(Patch(bytes, 0, 7)), "signature");
        StringAssert.Contains(ReadFails(Patch(bytes, 4, 99)), "version 99");
        StringAssert.Contains(ReadFails(Patch(bytes, 8, 5)), "score type");
        StringAssert.Contains(ReadFails(Patch(bytes, 12, 0)), "layer channels");
        StringAssert.Contains(ReadFails(Patch(bytes, 24, 3)), "pooling kernel size");
        StringAssert.Contains(ReadFails(Patch(bytes, 28, 9)), "component count");
        var nan = (byte[])bytes.Clone();
        BitConverter.TryWriteBytes(nan.AsSpan(32), float.NaN);
        StringAssert.Contains(ReadFails(nan), "PCA mean");
        // Gaussian singular values follow mean (4), components (8) and Gaussian mean (2).
        var negative = (byte[])bytes.Clone();
        BitConverter.TryWriteBytes(negative.AsSpan(32 + 4 * 14), -1f);
        StringAssert.Contains(ReadFails(negative), "Gaussian singular values");
        StringAssert.Contains(ReadFails(bytes[..(bytes.Length - 3)]), "truncated");
        StringAssert.Contains(ReadFails(bytes[..10]), "truncated");
    }

    private static byte[] Patch(byte[] bytes, int offset, int value)
    {
        var copy = (byte[])bytes.Clone();
        BitConverter.TryWriteBytes(copy.AsSpan(offset), value);
        return copy;
    }

    private static string FitFails(IFeatureSource source, DfmTrainingOptions options) =>
        Assert.ThrowsExactly<ArgumentException>(() => DfmTrainer.Fit(source, options)).Message;

    [TestMethod]
    public void FitRejectsBadInput()
    {
        var shape = new LayerShape(2, 4, 4);
        StringAssert.Contains(FitFails(new InMemoryFeatureSource(new[] { shape }), Options()), "at least 2 training images");
        StringAssert.Contains(FitFails(RandomSource(shape, 1, 0), Options()), "at least 2 training images");
        var twoLayers = new InMemoryFeatureSource(new[] { shape, shape });
        twoLayers.Add(new float[shape.Size], new float[shape.Size]);
        StringAssert.Contains(FitFails(twoLayers, Options()), "exactly one backbone layer");
        StringAssert.Contains(FitFails(RandomSource(shape, 4, 0), Options(kernel: 5)), "larger than the 4×4 feature map");
        StringAssert.Contains(FitFails(RandomSource(shape, 4, 0), Options(kernel: 0)), "PoolingKernelSize");
        StringAssert.Contains(FitFails(RandomSource(shape, 4, 0), Options(share: 0f)), "VarianceShare");
        StringAssert.Contains(FitFails(RandomSource(shape, 4, 0), Options(share: float.NaN)), "VarianceShare");

        var withNaN = RandomSource(shape, 3, 0);
        var bad = new float[shape.Size];
        bad[5] = float.NaN;
        withNaN.Add(bad);
        StringAssert.Contains(FitFails(withNaN, Options()), "Training image 3");

        var same = new InMemoryFeatureSource(new[] { shape });
        var image = Enumerable.Range(0, shape.Size).Select(i => 0.1f * i).ToArray();
        for (int i = 0; i < 5; i++)
            same.Add(image);
        StringAssert.Contains(FitFails(same, Options()), "variance is zero");

        // 6 components need 7 images for NLL; FRE can keep them.
        StringAssert.Contains(FitFails(RandomSource(shape, 6, 0), Options(6f, DfmScoreType.Nll)), "at least 7 training images");
        Assert.AreEqual(6, DfmTrainer.Fit(RandomSource(shape, 6, 0), Options(6f)).ComponentCount);
        StringAssert.Contains(FitFails(RandomSource(shape, 6, 0), Options(7f)), "at most 6");
        // A share met by the first component keeps none, which NLL cannot model.
        StringAssert.Contains(FitFails(AxisSource(), Options(0.5f, DfmScoreType.Nll)), "keeps no principal component");
    }

    [TestMethod]
    public void ScoreRejectsWrongLengths()
    {
        var model = DfmTrainer.Fit(AxisSource(), Options());
        Assert.ThrowsExactly<ArgumentException>(() => model.Score(new float[3], Span<float>.Empty));
        Assert.ThrowsExactly<ArgumentException>(() => model.Score(new float[4], new float[3]));
    }
}
