using Anomaly.Vision.Training;

namespace Anomaly.Vision.Training.Tests.Cfa;

[TestClass]
public sealed class CfaModelTests
{
    private static readonly Lazy<CfaModel> Trained = new(() =>
        CfaTrainer.Train(CfaTestData.Source(CfaTestData.Maps(6, seed: 9)), CfaTestData.Options(epochs: 1)));

    private static byte[] Bytes(CfaModel model)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
            model.Write(writer);
        return stream.ToArray();
    }

    private static CfaModel Read(byte[] bytes)
    {
        using var reader = new BinaryReader(new MemoryStream(bytes));
        return CfaModel.Read(reader);
    }

    [TestMethod]
    public void WriteReadRoundTripKeepsEveryValue()
    {
        var model = Trained.Value;
        var bytes = Bytes(model);
        var copy = Read(bytes);
        CollectionAssert.AreEqual(model.Layers.ToArray(), copy.Layers.ToArray());
        Assert.AreEqual(model.DescriptorChannels, copy.DescriptorChannels);
        Assert.AreEqual(model.BankSize, copy.BankSize);
        Assert.AreEqual(model.NumNearestNeighbors, copy.NumNearestNeighbors);
        CollectionAssert.AreEqual(model.DescriptorWeight.ToArray(), copy.DescriptorWeight.ToArray());
        CollectionAssert.AreEqual(model.DescriptorBias.ToArray(), copy.DescriptorBias.ToArray());
        CollectionAssert.AreEqual(model.MemoryBank.ToArray(), copy.MemoryBank.ToArray());
        CollectionAssert.AreEqual(bytes, Bytes(copy));
        // header: version 1, 2 layers, (8,8,8), (4,4,4), D 12, K 3, M 64; then 12·14 + 12 + 64·12 floats
        Assert.AreEqual(4 * (1 + 1 + 6 + 3) + 4 * (12 * 14 + 12 + 64 * 12), bytes.Length);
    }

    [TestMethod]
    public void DescribeIsTheDescriptorOutputPatchMajor()
    {
        var model = Trained.Value;
        var maps = CfaTestData.Maps(2, seed: 10);
        var batch = new[] { maps[0][0].Concat(maps[1][0]).ToArray(), maps[0][1].Concat(maps[1][1]).ToArray() };
        var both = new float[2 * 64 * 12];
        model.Describe(batch, 2, both);
        var single = new float[64 * 12];
        model.Describe(new[] { maps[1][0], maps[1][1] }, 1, single);
        for (int i = 0; i < single.Length; i++)
            Assert.AreEqual(single[i], both[64 * 12 + i], 1e-5f);

        // Patch (y 2, x 5), channel 4 by hand: Σ_i w[4, i]·input_i + b[4], where the input there is the pooled
        // first layer (only layer 0 is used here: layer-1 maps are zero) and the coordinates 2·2/7 − 1, 2·5/7 − 1.
        var layer0 = maps[0][0];
        var output = new float[64 * 12];
        model.Describe(new[] { layer0, new float[64] }, 1, output);
        var w = model.DescriptorWeight;
        double expected = model.DescriptorBias[4] + w[4 * 14 + 12] * (2.0 * 2 / 7 - 1) + w[4 * 14 + 13] * (2.0 * 5 / 7 - 1);
        for (int c = 0; c < 8; c++)
        {
            double sum = 0;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++)
                    sum += layer0[c * 64 + (2 + dy) * 8 + 5 + dx];
            expected += w[4 * 14 + c] * sum / 9;
        }
        Assert.AreEqual(expected, output[(2 * 8 + 5) * 12 + 4], 1e-5);
    }

    [TestMethod]
    public void DescribeRejectsWrongLengths()
    {
        var model = Trained.Value;
        var e = Assert.ThrowsExactly<ArgumentException>(() => model.Describe(new[] { new float[512], new float[63] }, 1, new float[768]));
        Assert.AreEqual("layerMaps", e.ParamName);
        e = Assert.ThrowsExactly<ArgumentException>(() => model.Describe(new[] { new float[512], new float[64] }, 1, new float[767]));
        Assert.AreEqual("destination", e.ParamName);
    }

    [TestMethod]
    public void TruncatedDataIsRejected()
    {
        var bytes = Bytes(Trained.Value);
        var e = Assert.ThrowsExactly<FormatException>(() => Read(bytes[..(bytes.Length - 3)]));
        StringAssert.Contains(e.Message, "memory bank");
        Assert.ThrowsExactly<FormatException>(() => Read(bytes[..10]));
    }

    [TestMethod]
    public void CorruptFieldsAreRejectedByName()
    {
        var good = Bytes(Trained.Value);
        void Expect(int offset, int value, string field)
        {
            var bytes = (byte[])good.Clone();
            BitConverter.TryWriteBytes(bytes.AsSpan(offset, 4), value);
            var e = Assert.ThrowsExactly<FormatException>(() => Read(bytes));
            StringAssert.Contains(e.Message, field);
        }
        Expect(0, 99, "version");
        Expect(4, 0, "layer count");
        Expect(8, -8, "layer 0 channels");
        Expect(28, 0, "layer 1 width");
        Expect(32, 0, "descriptor channels");
        Expect(36, 65, "nearest neighbours");
        Expect(40, 1 << 30, "memory bank");                 // more entries than the bytes left hold

        var nan = (byte[])good.Clone();
        BitConverter.TryWriteBytes(nan.AsSpan(nan.Length - 4, 4), float.NaN);
        var e = Assert.ThrowsExactly<FormatException>(() => Read(nan));
        StringAssert.Contains(e.Message, "memory bank");
        var inf = (byte[])good.Clone();
        BitConverter.TryWriteBytes(inf.AsSpan(44, 4), float.PositiveInfinity);
        e = Assert.ThrowsExactly<FormatException>(() => Read(inf));
        StringAssert.Contains(e.Message, "descriptor weight");
    }
}
