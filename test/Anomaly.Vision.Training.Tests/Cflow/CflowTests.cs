using Anomaly.Vision.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training.Tests.Cflow;

[TestClass]
public sealed class CflowTests
{
    private static readonly LayerShape[] TinyLayers = { new(6, 4, 4), new(4, 2, 2) };

    [TestMethod]
    public void PositionalEncodingMatchesTheFormulaAtSeveralPositions()
    {
        // P = 8: half = 4, frequencies exp(-2k·ln(1e4)/4) = 1 and 0.01.
        float[] code = PositionalEncoding.Create(8, 3, 5);
        Assert.HasCount(8 * 3 * 5, code);
        float At(int channel, int y, int x) => code[(channel * 3 + y) * 5 + x];
        // (y = 2, x = 3)
        Assert.AreEqual(0.1411200f, At(0, 2, 3), 1e-6f);    // sin(3)
        Assert.AreEqual(-0.9899925f, At(1, 2, 3), 1e-6f);   // cos(3)
        Assert.AreEqual(0.0299955f, At(2, 2, 3), 1e-6f);    // sin(0.03)
        Assert.AreEqual(0.9995500f, At(3, 2, 3), 1e-6f);    // cos(0.03)
        Assert.AreEqual(0.9092974f, At(4, 2, 3), 1e-6f);    // sin(2)
        Assert.AreEqual(-0.4161468f, At(5, 2, 3), 1e-6f);   // cos(2)
        Assert.AreEqual(0.0199987f, At(6, 2, 3), 1e-6f);    // sin(0.02)
        Assert.AreEqual(0.9998000f, At(7, 2, 3), 1e-6f);    // cos(0.02)
        // (y = 0, x = 0): sines 0, cosines 1
        for (int c = 0; c < 8; c++)
            Assert.AreEqual(c % 2 == 0 ? 0f : 1f, At(c, 0, 0), 1e-7f);
        // (y = 1, x = 4)
        Assert.AreEqual(-0.7568025f, At(0, 1, 4), 1e-6f);   // sin(4)
        Assert.AreEqual(0.8414710f, At(4, 1, 4), 1e-6f);    // sin(1)
        Assert.AreEqual(0.5403023f, At(5, 1, 4), 1e-6f);    // cos(1)
    }

    [TestMethod]
    public void ConditionSizeNotAMultipleOfFourIsRejected()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => PositionalEncoding.Create(6, 2, 2));
        Assert.AreEqual("conditionSize", e.ParamName);
        var source = Features(TinyLayers, 4, seed: 1, shift: 0);
        var t = Assert.ThrowsExactly<ArgumentException>(() => CflowTrainer.Train(source, new CflowTrainingOptions { ConditionVectorSize = 10, Device = ComputeDevice.Cpu }));
        Assert.AreEqual("options", t.ParamName);
        StringAssert.Contains(t.Message, "ConditionVectorSize");
    }

    [TestMethod]
    public void TooFewFibersForAFiberBatchIsRejected()
    {
        var source = Features(new[] { new LayerShape(4, 2, 2) }, 3, seed: 1, shift: 0);
        var e = Assert.ThrowsExactly<ArgumentException>(() => CflowTrainer.Train(source, new CflowTrainingOptions { ConditionVectorSize = 8, Device = ComputeDevice.Cpu }));
        Assert.AreEqual("options", e.ParamName);
        StringAssert.Contains(e.Message, "FiberBatchSize");
    }

    [TestMethod]
    public void GlobalScaleStartsAtOne()
    {
        TorchRuntime.EnsureAvailable();
        using var generator = new Generator(1);
        using var block = new AllInOneCouplingBlock(6, 8, 1.9f, false, generator, ScalarType.Float64, CPU);
        using var scope = NewDisposeScope();
        var scale = block.GlobalScaleActivation();
        for (int c = 0; c < 6; c++)
            Assert.AreEqual(1.0, scale[c].item<double>(), 1e-12);
        Assert.AreEqual(9.9864785, AllInOneCouplingBlock.InitialGlobalScale, 1e-6);   // 10 + 2·log(1 − e⁻⁵)
    }

    [TestMethod]
    [DataRow(6, false)]
    [DataRow(7, false)]
    [DataRow(6, true)]
    public void CouplingBlockIsInvertible(int channels, bool soft)
    {
        TorchRuntime.EnsureAvailable();
        using var generator = new Generator(7);
        using var block = new AllInOneCouplingBlock(channels, 8, 1.9f, soft, generator, ScalarType.Float32, CPU);
        using var scope = NewDisposeScope();
        Perturb(block, generator);
        var x = randn(new long[] { 5, channels }, generator: generator);
        var hidden = block.ConditionHidden(randn(new long[] { 5, 8 }, generator: generator));
        using var noGrad = no_grad();
        var (y, _) = block.Forward(x, hidden);
        Assert.IsGreaterThan(0.1, (y - x).abs().max().item<float>(), "the block must change its input");
        var back = block.Inverse(y, hidden);
        Assert.IsLessThan(1e-5, (back - x).abs().max().item<float>());
    }

    [TestMethod]
    [DataRow(6, false, 1)]
    [DataRow(7, true, 1)]
    [DataRow(6, false, 3)]
    public void LogDeterminantMatchesFiniteDifferenceJacobian(int channels, bool soft, int blocks)
    {
        TorchRuntime.EnsureAvailable();
        using var generator = new Generator(11);
        using var flow = ConditionalFlow.Create(channels, 8, blocks, 1.9f, soft, generator, ScalarType.Float64, CPU);
        using var scope = NewDisposeScope();
        foreach (var block in flow.Blocks)
            Perturb(block, generator);
        using var noGrad = no_grad();
        var x = randn(new long[] { 1, channels }, dtype: ScalarType.Float64, generator: generator);
        var hidden = flow.ConditionHidden(randn(new long[] { 1, 8 }, dtype: ScalarType.Float64, generator: generator));
        var (_, logDet) = flow.Forward(x, hidden);

        const double h = 1e-6;
        var jacobian = zeros(new long[] { channels, channels }, ScalarType.Float64);
        for (int j = 0; j < channels; j++)
        {
            var step = zeros(new long[] { 1, channels }, ScalarType.Float64);
            step[0, j] = tensor(h, ScalarType.Float64);
            var plus = flow.Forward(x + step, hidden).Z;
            var minus = flow.Forward(x - step, hidden).Z;
            jacobian[TensorIndex.Colon, j] = ((plus - minus) / (2 * h))[0];
        }
        double expected = linalg.slogdet(jacobian).Item2.item<double>();
        Assert.IsGreaterThan(0.05, Math.Abs(expected), "the test needs a Jacobian that is not volume-preserving");
        Assert.AreEqual(expected, logDet.item<double>(), 1e-6);
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void FrozenFlowMatchesTheTrainingFlow(bool soft)
    {
        // The inference path (channels first, precomputed condition, in place) against the training path, in double.
        TorchRuntime.EnsureAvailable();
        using var generator = new Generator(5);
        using var flow = ConditionalFlow.Create(7, 8, 3, 1.9f, soft, generator, ScalarType.Float64, CPU);
        using var scope = NewDisposeScope();
        foreach (var block in flow.Blocks)
            Perturb(block, generator);
        using var noGrad = no_grad();
        var code = tensor(PositionalEncoding.Create(8, 2, 3)).to(ScalarType.Float64).view(8, 6).t();   // [positions, P]
        var x = randn(new long[] { 2, 6, 7 }, dtype: ScalarType.Float64, generator: generator);          // [images, positions, C]
        var expected = flow.LogLikelihood(x, flow.ConditionHidden(code));
        using var frozen = flow.Freeze(code);
        var actual = frozen.LogLikelihood(x.permute(2, 0, 1).contiguous());
        Assert.IsLessThan(1e-12, (expected - actual).abs().max().item<double>());
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void CpuInferenceMatchesTheTrainingFlow(bool soft)
    {
        // The C# inference path against LibTorch's training path, in float32: an odd channel count and a 17×19 grid,
        // whose 323 positions make a full and a partial chunk per image.
        TorchRuntime.EnsureAvailable();
        using var generator = new Generator(5);
        using var flow = ConditionalFlow.Create(7, 8, 3, 1.9f, soft, generator, ScalarType.Float32, CPU);
        using var scope = NewDisposeScope();
        foreach (var block in flow.Blocks)
            Perturb(block, generator);
        using var noGrad = no_grad();
        const int height = 17, width = 19, positions = height * width, images = 2;
        float[] positionCode = PositionalEncoding.Create(8, height, width);
        var code = tensor(positionCode).view(8, positions).t();                                               // [positions, P]
        var x = randn(new long[] { images, positions, 7 }, dtype: ScalarType.Float32, generator: generator);   // [images, positions, C]
        var expected = flow.LogLikelihood(x, flow.ConditionHidden(code)).data<float>().ToArray();             // [images, positions]

        var maps = x.permute(0, 2, 1).contiguous().data<float>().ToArray();                                    // [images, C, positions]
        var actual = new float[1 + images * positions];
        new CflowCpuInference(flow, positionCode, positions).LogLikelihoods(maps, 0, images, actual, 1);
        Assert.AreEqual(0f, actual[0], "nothing is written before the destination offset");
        for (int i = 0; i < expected.Length; i++)
            Assert.AreEqual(expected[i], actual[1 + i], 1e-4f * Math.Max(1f, Math.Abs(expected[i])), $"fiber {i}");
    }

    [TestMethod]
    public void LogLikelihoodOfIdentityFlowIsTheStandardNormalDensity()
    {
        // With zero second subnet layers the coupling is the identity; σ = 1, offset 0: z is a permutation of x,
        // so log p / C = −log √(2π) − ½·Σx²/C. For x = 1 everywhere: −0.9189385 − 0.5 = −1.4189385.
        TorchRuntime.EnsureAvailable();
        using var generator = new Generator(3);
        var flows = TinyLayers.Select(s => ConditionalFlow.Create(s.Channels, 8, 2, 1.9f, false, generator, ScalarType.Float32, CPU)).ToArray();
        using (no_grad())
            foreach (var block in flows.SelectMany(f => f.Blocks))
            {
                block.Weight2.zero_();
                block.Bias2.zero_();
            }
        using var model = new CflowModel(TinyLayers, 8, 1.9f, false, flows, CPU);
        var maps = TinyLayers.Select(s => Enumerable.Repeat(1f, 2 * s.Size).ToArray()).ToArray();
        var output = TinyLayers.Select(s => new float[2 * s.Height * s.Width]).ToArray();
        model.LogLikelihoods(maps, 2, output);
        foreach (var values in output)
            foreach (float v in values)
                Assert.AreEqual(-1.4189385f, v, 1e-5f);
    }

    [TestMethod]
    public void LogLikelihoodsUseEachPositionsFiberAndCode()
    {
        var source = Features(TinyLayers, 6, seed: 2, shift: 0);
        using var model = CflowTrainer.Train(source, TinyOptions(epochs: 1));
        var maps = TinyLayers.Select((s, l) => RandomArray(3 * s.Size, 30 + l)).ToArray();
        var output = TinyLayers.Select(s => new float[3 * s.Height * s.Width]).ToArray();
        model.LogLikelihoods(maps, 3, output);

        // Image 2, layer 0, row 1, column 3, computed directly from the fiber and the position code.
        var shape = TinyLayers[0];
        float[] code = PositionalEncoding.Create(8, shape.Height, shape.Width);
        int y = 1, x = 3, image = 2, plane = shape.Height * shape.Width;
        var fiber = Enumerable.Range(0, shape.Channels).Select(c => maps[0][image * shape.Size + c * plane + y * shape.Width + x]).ToArray();
        var condition = Enumerable.Range(0, 8).Select(c => code[c * plane + y * shape.Width + x]).ToArray();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var flow = model.Flows[0];
        var expected = flow.LogLikelihood(tensor(fiber).unsqueeze(0), flow.ConditionHidden(tensor(condition).unsqueeze(0)));
        Assert.AreEqual(expected.item<float>(), output[0][image * plane + y * shape.Width + x], 1e-5f);
    }

    [TestMethod]
    public void TrainingLowersTheNegativeLogLikelihood()
    {
        var source = Features(TinyLayers, 16, seed: 3, shift: 0);
        var losses = new List<TrainingProgress>();
        var options = TinyOptions(epochs: 6);
        using var model = CflowTrainer.Train(source, options, new SynchronousProgress(losses.Add));
        Assert.HasCount(6, losses);
        for (int e = 0; e < 6; e++)
        {
            Assert.AreEqual("training", losses[e].Stage);
            Assert.AreEqual(e + 1, losses[e].Step);
            Assert.AreEqual(6, losses[e].Steps);
            Assert.IsTrue(double.IsFinite(losses[e].Loss));
        }
        Assert.IsLessThan(losses[0].Loss - 0.05, losses[5].Loss, $"first {losses[0].Loss}, last {losses[5].Loss}");

        // Normal features are more likely than shifted ones.
        double normal = MeanLogLikelihood(model, Features(TinyLayers, 4, seed: 4, shift: 0));
        double shifted = MeanLogLikelihood(model, Features(TinyLayers, 4, seed: 4, shift: 3));
        Assert.IsGreaterThan(shifted + 0.5, normal, $"normal {normal}, shifted {shifted}");
    }

    [TestMethod]
    public void SameSeedGivesTheSameModel()
    {
        var source = Features(TinyLayers, 8, seed: 5, shift: 0);
        var probe = Features(TinyLayers, 2, seed: 6, shift: 0);
        using var a = CflowTrainer.Train(source, TinyOptions(epochs: 2, seed: 4));
        using var b = CflowTrainer.Train(source, TinyOptions(epochs: 2, seed: 4));
        using var c = CflowTrainer.Train(source, TinyOptions(epochs: 2, seed: 5));
        var la = Evaluate(a, probe);
        var lb = Evaluate(b, probe);
        var lc = Evaluate(c, probe);
        for (int l = 0; l < la.Length; l++)
            CollectionAssert.AreEqual(la[l], lb[l]);
        Assert.IsFalse(la[0].SequenceEqual(lc[0]), "another seed gives another model");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void HandWrittenCpuStepTrainsTheSameModelAsLibTorch(bool soft)
    {
        // An odd channel count (uneven split) and a fiber count that leaves a remainder (4 · 9 = 36 = 16 + 20).
        LayerShape[] layers = { new(5, 4, 4), new(4, 3, 3) };
        var source = Features(layers, 8, seed: 16, shift: 0);
        var options = TinyOptions(epochs: 3);
        options.PermuteSoft = soft;
        var handWrittenLosses = new List<double>();
        var libTorchLosses = new List<double>();
        using var handWritten = CflowTrainer.Train(source, options, new SynchronousProgress(p => handWrittenLosses.Add(p.Loss)), default, throughLibTorch: false);
        using var libTorch = CflowTrainer.Train(source, options, new SynchronousProgress(p => libTorchLosses.Add(p.Loss)), default, throughLibTorch: true);
        using var untrained = CflowTrainer.Train(source, new CflowTrainingOptions { ConditionVectorSize = 8, CouplingBlocks = 2, FiberBatchSize = 16,
            BatchSize = 4, LearningRate = 1e-12f, Epochs = 1, PermuteSoft = soft, Device = ComputeDevice.Cpu });
        for (int e = 0; e < 3; e++)
            Assert.AreEqual(libTorchLosses[e], handWrittenLosses[e], 1e-5 * Math.Abs(libTorchLosses[e]), $"epoch {e + 1}");

        var probe = Features(layers, 2, seed: 17, shift: 0.5f);
        var expected = Evaluate(libTorch, probe);
        var actual = Evaluate(handWritten, probe);
        var start = Evaluate(untrained, probe);
        for (int l = 0; l < expected.Length; l++)
        {
            double moved = expected[l].Zip(start[l], (a, b) => Math.Abs(a - b)).Max();
            Assert.IsGreaterThan(0.01, moved, $"layer {l}: training moved the log-likelihoods by only {moved}");
            for (int i = 0; i < expected[l].Length; i++)
                Assert.AreEqual(expected[l][i], actual[l][i], 1e-4f + 1e-5f * Math.Abs(expected[l][i]), $"layer {l}, position {i}");
        }
        for (int l = 0; l < layers.Length; l++)
            Assert.AreEqual(libTorch.LogLikelihoodReferences![l], handWritten.LogLikelihoodReferences![l], 1e-4f);
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void WriteReadRoundTripGivesIdenticalLogLikelihoods(bool soft)
    {
        var source = Features(TinyLayers, 8, seed: 7, shift: 0);
        var options = TinyOptions(epochs: 1);
        options.PermuteSoft = soft;
        using var model = CflowTrainer.Train(source, options);
        byte[] bytes = Serialize(model);
        using var copy = CflowModel.Read(new BinaryReader(new MemoryStream(bytes)), ComputeDevice.Cpu);
        CollectionAssert.AreEqual(model.Layers.ToArray(), copy.Layers.ToArray());
        Assert.AreEqual(8, copy.ConditionVectorSize);
        Assert.AreEqual(2, copy.CouplingBlocks);
        Assert.AreEqual(1.9f, copy.ClampAlpha);
        Assert.AreEqual(soft, copy.PermuteSoft);
        var probe = Features(TinyLayers, 3, seed: 8, shift: 1);
        var expected = Evaluate(model, probe);
        var actual = Evaluate(copy, probe);
        CollectionAssert.AreEqual(model.LogLikelihoodReferences!.ToArray(), copy.LogLikelihoodReferences!.ToArray());
        for (int l = 0; l < expected.Length; l++)
            CollectionAssert.AreEqual(expected[l], actual[l]);
        CollectionAssert.AreEqual(bytes, Serialize(copy));
    }

    [TestMethod]
    public void TrainingSetsEachLayersReferenceToTheMeanOfTheTrainingImagesMaxima()
    {
        var source = Features(TinyLayers, 6, seed: 13, shift: 0);
        using var model = CflowTrainer.Train(source, TinyOptions(epochs: 1));
        var logLikelihoods = Evaluate(model, source);
        Assert.HasCount(TinyLayers.Length, model.LogLikelihoodReferences!);
        for (int l = 0; l < TinyLayers.Length; l++)
        {
            int positions = TinyLayers[l].Height * TinyLayers[l].Width;
            double expected = Enumerable.Range(0, source.Count).Average(i => logLikelihoods[l].Skip(i * positions).Take(positions).Max());
            Assert.AreEqual(expected, model.LogLikelihoodReferences![l], 1e-4, $"layer {l}");
        }
        Assert.AreNotEqual(model.LogLikelihoodReferences![0], model.LogLikelihoodReferences![1]);
    }

    [TestMethod]
    public void FirstFormatVersionLoadsWithoutReferences()
    {
        var source = Features(TinyLayers, 4, seed: 14, shift: 0);
        using var model = CflowTrainer.Train(source, TinyOptions(epochs: 1));
        model.LogLikelihoodReferences = null;
        byte[] withoutReferences = Serialize(model);
        Assert.AreEqual(0, withoutReferences[^1], "the references flag is the last byte");
        using (var copy = CflowModel.Read(new BinaryReader(new MemoryStream(withoutReferences)), ComputeDevice.Cpu))
            Assert.IsNull(copy.LogLikelihoodReferences);

        // Version 1 is version 2 without the references flag.
        byte[] versionOne = withoutReferences[..^1];
        BitConverter.GetBytes(1).CopyTo(versionOne, 0);
        using var old = CflowModel.Read(new BinaryReader(new MemoryStream(versionOne)), ComputeDevice.Cpu);
        Assert.IsNull(old.LogLikelihoodReferences);
        var probe = Features(TinyLayers, 2, seed: 15, shift: 0);
        var expected = Evaluate(model, probe);
        var actual = Evaluate(old, probe);
        for (int l = 0; l < expected.Length; l++)
            CollectionAssert.AreEqual(expected[l], actual[l]);
    }

    [TestMethod]
    public void ConcurrentLogLikelihoodsMatchSequentialOnes()
    {
        var source = Features(TinyLayers, 4, seed: 12, shift: 0);
        using var model = CflowTrainer.Train(source, TinyOptions(epochs: 1));
        var probes = Enumerable.Range(0, 8).Select(i => Features(TinyLayers, 2, seed: 100 + i, shift: 0)).ToArray();
        var sequential = probes.Select(p => Evaluate(model, p)).ToArray();
        var parallel = new float[probes.Length][][];
        Parallel.For(0, probes.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => parallel[i] = Evaluate(model, probes[i]));
        for (int i = 0; i < probes.Length; i++)
            for (int l = 0; l < TinyLayers.Length; l++)
                CollectionAssert.AreEqual(sequential[i][l], parallel[i][l]);
    }

    [TestMethod]
    public void CorruptPayloadIsRejected()
    {
        var source = Features(TinyLayers, 4, seed: 9, shift: 0);
        using var model = CflowTrainer.Train(source, TinyOptions(epochs: 1));
        byte[] bytes = Serialize(model);

        static FormatException Fails(byte[] data) =>
            Assert.ThrowsExactly<FormatException>(() => CflowModel.Read(new BinaryReader(new MemoryStream(data)), ComputeDevice.Cpu));

        // The tail: references flag and one float32 per layer.
        int tail = 1 + 4 * TinyLayers.Length;
        StringAssert.Contains(Fails(bytes[..^(tail + 3)]).Message, "layer 1 block 1 subnet bias 2");
        StringAssert.Contains(Fails(bytes[..^2]).Message, "layer 1 log-likelihood reference");
        var flag = (byte[])bytes.Clone();
        flag[^tail] = 2;
        StringAssert.Contains(Fails(flag).Message, "references flag 2");
        var reference = (byte[])bytes.Clone();
        BitConverter.GetBytes(float.PositiveInfinity).CopyTo(reference, bytes.Length - 4);
        StringAssert.Contains(Fails(reference).Message, "layer 1 log-likelihood reference");
        var version = (byte[])bytes.Clone();
        version[0] = 99;
        StringAssert.Contains(Fails(version).Message, "format version 99");
        var condition = (byte[])bytes.Clone();
        BitConverter.GetBytes(6).CopyTo(condition, 8);
        StringAssert.Contains(Fails(condition).Message, "condition vector size 6");
        // Header: 4 ints + float + byte = 21 bytes; layer 0: 3 ints; then block 0's permutation (6 ints).
        var permutation = (byte[])bytes.Clone();
        BitConverter.GetBytes(7).CopyTo(permutation, 21 + 12);
        StringAssert.Contains(Fails(permutation).Message, "layer 0 block 0 permutation");
        var notFinite = (byte[])bytes.Clone();
        BitConverter.GetBytes(float.NaN).CopyTo(notFinite, 21 + 12 + 6 * 4);
        StringAssert.Contains(Fails(notFinite).Message, "layer 0 block 0 global scale");
        StringAssert.Contains(Fails(Array.Empty<byte>()).Message, "format version");
    }

    [TestMethod]
    public void CancellationStopsTraining()
    {
        var source = Features(TinyLayers, 4, seed: 1, shift: 0);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsExactly<OperationCanceledException>(() => CflowTrainer.Train(source, TinyOptions(epochs: 1), null, cancelled.Token));
    }

    [TestMethod]
    public void CancellationDuringTheParallelStepsStopsTrainingWithOperationCanceled()
    {
        // The token is cancelled by the last read of the second image batch (4 images, 2 layers), after the checks
        // before each read, so the layers' parallel steps start cancelled: they stop at once and Train throws
        // OperationCanceledException itself, not an AggregateException.
        var source = Features(TinyLayers, 8, seed: 1, shift: 0);
        using var cancelled = new CancellationTokenSource();
        var cancelling = new CancellingSource(source, cancelled, readsBeforeCancel: 2 * 4 * TinyLayers.Length);
        var epochs = new List<int>();
        Assert.ThrowsExactly<OperationCanceledException>(() =>
            CflowTrainer.Train(cancelling, TinyOptions(epochs: 2), new SynchronousProgress(p => epochs.Add(p.Step)), cancelled.Token));
        Assert.IsEmpty(epochs, "no epoch finished");
    }

    private sealed class CancellingSource(IFeatureSource inner, CancellationTokenSource cancellation, int readsBeforeCancel) : IFeatureSource
    {
        private int _reads;

        public int Count => inner.Count;

        public IReadOnlyList<LayerShape> Layers => inner.Layers;

        public void Read(int image, int layer, Span<float> destination)
        {
            if (++_reads == readsBeforeCancel)
                cancellation.Cancel();
            inner.Read(image, layer, destination);
        }
    }

    [TestMethod]
    [DataRow(float.NaN)]
    [DataRow(float.PositiveInfinity)]
    public void NonFiniteTrainingFeaturesAreRejectedByImageAndLayer(float bad)
    {
        var good = Features(TinyLayers, 4, seed: 1, shift: 0);
        var source = new InMemoryFeatureSource(TinyLayers);
        for (int i = 0; i < 4; i++)
        {
            var maps = TinyLayers.Select((s, l) => { var m = new float[s.Size]; good.Read(i, l, m); return m; }).ToArray();
            if (i == 2)
                maps[1][3] = bad;
            source.Add(maps);
        }
        var e = Assert.ThrowsExactly<ArgumentException>(() => CflowTrainer.Train(source, TinyOptions(epochs: 1)));
        Assert.AreEqual("features", e.ParamName);
        StringAssert.Contains(e.Message, "Image 2's layer 1");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void DivergingTrainingThrowsInsteadOfReturningANonFiniteModel(bool throughLibTorch)
    {
        var options = TinyOptions(epochs: 3);
        options.LearningRate = 1e4f;
        var e = Assert.ThrowsExactly<InvalidOperationException>(() =>
            CflowTrainer.Train(Features(TinyLayers, 8, seed: 16, shift: 0), options, null, default, throughLibTorch));
        StringAssert.Contains(e.Message, "diverged");
        StringAssert.Contains(e.Message, "LearningRate");
    }

    [TestMethod]
    public void MismatchedInputsAreRejected()
    {
        var source = Features(TinyLayers, 4, seed: 1, shift: 0);
        using var model = CflowTrainer.Train(source, TinyOptions(epochs: 1));
        var maps = TinyLayers.Select(s => new float[s.Size]).ToArray();
        var output = TinyLayers.Select(s => new float[s.Height * s.Width]).ToArray();
        var e = Assert.ThrowsExactly<ArgumentException>(() => model.LogLikelihoods(maps, 2, output));
        Assert.AreEqual("layerMaps", e.ParamName);
        e = Assert.ThrowsExactly<ArgumentException>(() => model.LogLikelihoods(maps[..1], 1, output));
        Assert.AreEqual("layerMaps", e.ParamName);
    }

    private static CflowTrainingOptions TinyOptions(int epochs, int seed = 0) => new()
    {
        ConditionVectorSize = 8,
        CouplingBlocks = 2,
        FiberBatchSize = 16,
        BatchSize = 4,
        LearningRate = 2e-3f,
        Epochs = epochs,
        Seed = seed,
        Device = ComputeDevice.Cpu,
    };

    /// <summary>Correlated Gaussian features with a position-dependent mean, plus an optional shift.</summary>
    private static InMemoryFeatureSource Features(IReadOnlyList<LayerShape> layers, int count, int seed, float shift)
    {
        var random = new Random(seed);
        var source = new InMemoryFeatureSource(layers);
        for (int i = 0; i < count; i++)
        {
            var maps = new float[layers.Count][];
            for (int l = 0; l < layers.Count; l++)
            {
                var s = layers[l];
                int plane = s.Height * s.Width;
                var map = new float[s.Size];
                for (int p = 0; p < plane; p++)
                {
                    double common = Gaussian(random);
                    for (int c = 0; c < s.Channels; c++)
                        map[c * plane + p] = (float)(0.3 * Gaussian(random) + common * (c % 2 == 0 ? 1 : -1) + 0.5 * Math.Sin(p + c) + shift);
                }
                maps[l] = map;
            }
            source.Add(maps);
        }
        return source;
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    private static float[] RandomArray(int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)Gaussian(random)).ToArray();
    }

    private static float[][] Evaluate(CflowModel model, IFeatureSource source)
    {
        var maps = model.Layers.Select((s, l) =>
        {
            var all = new float[source.Count * s.Size];
            for (int i = 0; i < source.Count; i++)
                source.Read(i, l, all.AsSpan(i * s.Size, s.Size));
            return all;
        }).ToArray();
        var output = model.Layers.Select(s => new float[source.Count * s.Height * s.Width]).ToArray();
        model.LogLikelihoods(maps, source.Count, output);
        return output;
    }

    private static double MeanLogLikelihood(CflowModel model, IFeatureSource source) =>
        Evaluate(model, source).SelectMany(v => v).Average(v => (double)v);

    private static byte[] Serialize(CflowModel model)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
            model.Write(writer);
        return stream.ToArray();
    }

    /// <summary>Moves a fresh block away from its near-identity start so that tests see a non-trivial map.</summary>
    private static void Perturb(AllInOneCouplingBlock block, Generator generator)
    {
        using var noGrad = no_grad();
        block.Weight2.mul_(20);
        block.Bias2.add_(rand(block.Bias2.shape, dtype: block.Bias2.dtype, generator: generator) - 0.5);
        block.GlobalScale.add_(rand(block.GlobalScale.shape, dtype: block.GlobalScale.dtype, generator: generator) * 4 - 2);
        block.GlobalOffset.add_(rand(block.GlobalOffset.shape, dtype: block.GlobalOffset.dtype, generator: generator) - 0.5);
    }

    private sealed class SynchronousProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
