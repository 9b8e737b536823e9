using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Text;
using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.OnnxRuntime;

/// <summary>
/// Memory-bank scoring speed: <see cref="MemoryBankScorer"/> against ONNX Runtime running the same
/// computation (ReduceSumSquare + MatMul + Add + TopK + Add) on the same data, side by side.
/// Options: <c>--patches N --bank M --channels C --k K --reps R --vector 256|512 --depth D</c>.
/// The last line printed is <c>scorer_vs_onnxruntime=&lt;our median time / ONNX Runtime's median time&gt;</c>.
/// </summary>
internal static class ScorerBenchmark
{
    public static int Run(string[] args)
    {
        int patches = 4096, bankSize = 4096, channels = 448, k = 3, reps = 9, depth = MemoryBankScorer.DefaultDepthBlock;
        bool use512 = Vector512.IsHardwareAccelerated;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            int value = int.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--patches": patches = value; break;
                case "--bank": bankSize = value; break;
                case "--channels": channels = value; break;
                case "--k": k = value; break;
                case "--reps": reps = value; break;
                case "--vector": use512 = value == 512; break;
                case "--depth": depth = value; break;
                default:
                    Console.Error.WriteLine($"unknown option {args[i]}");
                    return 1;
            }
        }

        var rng = new Random(42);
        float[] features = RandomArray(rng, patches * channels);
        float[] bank = RandomArray(rng, bankSize * channels);
        double gflop = 2.0 * patches * bankSize * channels / 1e9;
        Console.WriteLine($"shape: {patches} patches x {channels} channels x {bankSize} bank entries, k={k}; {gflop:F2} GFLOP per run; "
            + $"{Environment.ProcessorCount} threads; Vector512 accelerated: {Vector512.IsHardwareAccelerated}");

        var sw = Stopwatch.StartNew();
        var scorer = new MemoryBankScorer(bank, bankSize, channels, use512, depth);
        Console.WriteLine($"scorer: packed the bank in {sw.Elapsed.TotalMilliseconds:F1} ms ({(use512 ? "Vector512" : "Vector256")} kernel, {depth} channels per pass)");
        float[] ours = new float[patches * k];

        using var options = new SessionOptions
        {
            IntraOpNumThreads = Environment.ProcessorCount,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        using var session = new InferenceSession(BuildModel(bank, bankSize, channels, k), options);
        using var input = OrtValue.CreateTensorValueFromMemory(features, new long[] { patches, channels });
        using var runOptions = new RunOptions();
        string[] inputNames = { "features" };
        string[] outputNames = { "distances" };
        float[] theirs = new float[patches * k];

        void RunOurs() => scorer.NearestSquaredDistances(features, patches, k, ours);
        void RunTheirs()
        {
            using var outputs = session.Run(runOptions, inputNames, new[] { input }, outputNames);
            outputs[0].GetTensorDataAsSpan<float>().CopyTo(theirs);
        }

        // Warm-up (JIT, ORT allocations), then interleaved timed repetitions.
        RunOurs(); RunTheirs(); RunOurs(); RunTheirs();
        var oursMs = new List<double>();
        var theirsMs = new List<double>();
        var oursCpuMs = new List<double>();
        var theirsCpuMs = new List<double>();
        using var process = Process.GetCurrentProcess();
        for (int r = 0; r < reps; r++)
        {
            Measure(RunOurs, oursMs, oursCpuMs);
            Measure(RunTheirs, theirsMs, theirsCpuMs);
        }

        void Measure(Action action, List<double> wall, List<double> cpu)
        {
            process.Refresh();
            TimeSpan cpuStart = process.TotalProcessorTime;
            sw.Restart();
            action();
            wall.Add(sw.Elapsed.TotalMilliseconds);
            process.Refresh();
            cpu.Add((process.TotalProcessorTime - cpuStart).TotalMilliseconds);
        }

        double maxDiff = 0;
        for (int i = 0; i < ours.Length; i++)
            maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - theirs[i]) / Math.Max(1.0, Math.Abs(theirs[i])));

        double oursMedian = Median(oursMs), theirsMedian = Median(theirsMs);
        Console.WriteLine($"scorer (fused distance + top-k): median {oursMedian,8:F2} ms  {gflop / (oursMedian / 1e3),7:F1} GFLOP/s  (best {oursMs.Min():F2} ms, {gflop / (oursMs.Min() / 1e3):F1} GFLOP/s)  runs [{string.Join(", ", oursMs.Select(t => t.ToString("F1")))}]");
        Console.WriteLine($"onnxruntime (MatMul + TopK):     median {theirsMedian,8:F2} ms  {gflop / (theirsMedian / 1e3),7:F1} GFLOP/s  (best {theirsMs.Min():F2} ms, {gflop / (theirsMs.Min() / 1e3):F1} GFLOP/s)  runs [{string.Join(", ", theirsMs.Select(t => t.ToString("F1")))}]");
        Console.WriteLine($"process CPU time per run (median): scorer {Median(oursCpuMs):F1} ms, onnxruntime {Median(theirsCpuMs):F1} ms");
        Console.WriteLine($"max relative difference of the distances: {maxDiff:E2}");
        Console.WriteLine($"scorer_vs_onnxruntime={oursMedian / theirsMedian:F3}");
        return 0;
    }

    private static float[] RandomArray(Random rng, int length)
    {
        var a = new float[length];
        for (int i = 0; i < a.Length; i++)
            a[i] = (float)rng.NextDouble();
        return a;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : 0.5 * (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]);
    }

    /// <summary>
    /// An ONNX model (opset 13) computing the k smallest squared distances:
    /// TopK(features·(−2·bankᵀ) + |bank|², k, smallest) + ReduceSumSquare(features).
    /// Written directly as protobuf bytes (field numbers from onnx.proto).
    /// </summary>
    private static byte[] BuildModel(float[] bank, int bankSize, int channels, int k)
    {
        var weights = new float[channels * bankSize];
        var norms = new float[bankSize];
        for (int m = 0; m < bankSize; m++)
        {
            double n = 0;
            for (int c = 0; c < channels; c++)
            {
                float v = bank[m * channels + c];
                weights[c * bankSize + m] = -2f * v;
                n += (double)v * v;
            }
            norms[m] = (float)n;
        }

        var graph = new Proto();
        graph.Message(1, Node("MatMul", new[] { "features", "weights" }, new[] { "dots" }));
        graph.Message(1, Node("Add", new[] { "dots", "norms" }, new[] { "partial" }));
        graph.Message(1, Node("TopK", new[] { "partial", "k" }, new[] { "values", "indices" },
            IntAttribute("axis", -1), IntAttribute("largest", 0), IntAttribute("sorted", 1)));
        graph.Message(1, Node("ReduceSumSquare", new[] { "features" }, new[] { "featureNorms" },
            IntsAttribute("axes", 1), IntAttribute("keepdims", 1)));
        graph.Message(1, Node("Add", new[] { "values", "featureNorms" }, new[] { "distances" }));
        graph.String(2, "memory_bank_knn");
        graph.Message(5, FloatTensor("weights", weights, channels, bankSize));
        graph.Message(5, FloatTensor("norms", norms, bankSize));
        graph.Message(5, Int64Tensor("k", k));
        graph.Message(11, ValueInfo("features", 1, -1, channels));
        graph.Message(12, ValueInfo("distances", 1, -1, k));

        var opset = new Proto();
        opset.String(1, "");
        opset.Varint(2, 13);

        var model = new Proto();
        model.Varint(1, 8);                 // ir_version
        model.String(2, "anomaly-vision-bench");
        model.Message(7, graph);
        model.Message(8, opset);
        return model.ToArray();
    }

    private static Proto Node(string op, string[] inputs, string[] outputs, params Proto[] attributes)
    {
        var node = new Proto();
        foreach (string i in inputs) node.String(1, i);
        foreach (string o in outputs) node.String(2, o);
        node.String(3, op + "_" + outputs[0]);
        node.String(4, op);
        foreach (Proto a in attributes) node.Message(5, a);
        return node;
    }

    private static Proto IntAttribute(string name, long value)
    {
        var a = new Proto();
        a.String(1, name);
        a.Varint(3, value);
        a.Varint(20, 2);                    // AttributeType.INT
        return a;
    }

    private static Proto IntsAttribute(string name, params long[] values)
    {
        var a = new Proto();
        a.String(1, name);
        foreach (long v in values) a.Varint(8, v);
        a.Varint(20, 7);                    // AttributeType.INTS
        return a;
    }

    private static Proto FloatTensor(string name, float[] data, params long[] dims)
    {
        var t = new Proto();
        foreach (long d in dims) t.Varint(1, d);
        t.Varint(2, 1);                     // FLOAT
        t.String(8, name);
        var raw = new byte[data.Length * sizeof(float)];
        Buffer.BlockCopy(data, 0, raw, 0, raw.Length);
        t.Bytes(9, raw);                    // raw_data, little-endian
        return t;
    }

    private static Proto Int64Tensor(string name, long value)
    {
        var t = new Proto();
        t.Varint(1, 1);
        t.Varint(2, 7);                     // INT64
        t.String(8, name);
        t.Bytes(9, BitConverter.GetBytes(value));
        return t;
    }

    /// <summary>ValueInfoProto of a tensor; a negative dimension becomes a symbolic one.</summary>
    private static Proto ValueInfo(string name, int elementType, params long[] dims)
    {
        var shape = new Proto();
        for (int i = 0; i < dims.Length; i++)
        {
            var dim = new Proto();
            if (dims[i] >= 0) dim.Varint(1, dims[i]);
            else dim.String(2, "d" + i);
            shape.Message(1, dim);
        }
        var tensorType = new Proto();
        tensorType.Varint(1, elementType);
        tensorType.Message(2, shape);
        var type = new Proto();
        type.Message(1, tensorType);
        var info = new Proto();
        info.String(1, name);
        info.Message(2, type);
        return info;
    }

    /// <summary>Minimal protobuf encoder: varint and length-delimited fields.</summary>
    private sealed class Proto
    {
        private readonly MemoryStream _stream = new();

        public void Varint(int field, long value)
        {
            WriteVarint((ulong)field << 3);
            WriteVarint((ulong)value);
        }

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Message(int field, Proto message) => Bytes(field, message.ToArray());

        public void Bytes(int field, byte[] value)
        {
            WriteVarint(((ulong)field << 3) | 2);
            WriteVarint((ulong)value.Length);
            _stream.Write(value);
        }

        public byte[] ToArray() => _stream.ToArray();

        private void WriteVarint(ulong v)
        {
            while (v >= 0x80)
            {
                _stream.WriteByte((byte)(v | 0x80));
                v >>= 7;
            }
            _stream.WriteByte((byte)v);
        }
    }
}
