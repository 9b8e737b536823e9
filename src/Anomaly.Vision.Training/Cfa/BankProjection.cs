using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Anomaly.Vision.Training;

/// <summary>
/// A few coordinates per vector from which a lower bound on its squared distance to every memory-bank entry follows:
/// the coordinates along the bank's leading principal directions, and the length of what those directions leave out.
/// </summary>
/// <remarks>
/// For an orthonormal basis V of r directions, centring μ, x' = x − μ and the reduction
/// R(x) = (Vᵀx', |x' − V·Vᵀx'|): |x − y|² = |Vᵀ(x' − y')|² + |P⊥(x' − y')|² ≥ |Vᵀx' − Vᵀy'|² + (|P⊥x'| − |P⊥y'|)²
/// = |R(x) − R(y)|², whatever V is, as long as it is orthonormal. The basis only decides how tight the bound is:
/// it comes from a few rounds of subspace iteration on the centred bank (fp32 products, orthonormalised in fp64),
/// which find directions close to the leading principal ones. The reductions themselves are computed in fp64 and
/// rounded to fp32 once, and |R(x)|² = |x'|², so the bound's own rounding is small next to that of the fp32
/// distances it is compared with (<see cref="MemoryBankScorer"/> allows for both).
/// </remarks>
internal sealed class BankProjection
{
    private const int SubspaceIterations = 4;
    private const int VectorsPerTile = 6;
    private const int ColumnsPerTile = 16;
    private const int Seed = 20240601;

    private readonly double[] _mean;             // [C]
    private readonly double[] _basisByChannel;   // [C][_columns]: the r orthonormal directions as columns, zero-padded
    private readonly double[] _meanCoordinates;  // [_columns]: Vᵀμ
    private readonly int _columns;               // r rounded up to whole register tiles

    private BankProjection(double[] mean, double[] basis, int rank, int channels)
    {
        _mean = mean;
        Rank = rank;
        Channels = channels;
        _columns = (rank + ColumnsPerTile - 1) / ColumnsPerTile * ColumnsPerTile;
        _basisByChannel = new double[channels * _columns];
        _meanCoordinates = new double[_columns];
        for (int j = 0; j < rank; j++)
        {
            for (int c = 0; c < channels; c++)
                _basisByChannel[c * _columns + j] = basis[j * channels + c];
            _meanCoordinates[j] = TensorPrimitives.Dot<double>(mean, basis.AsSpan(j * channels, channels));
        }
    }

    /// <summary>Number of principal directions r (at most the requested rank: fewer when the bank spans fewer).</summary>
    public int Rank { get; }

    /// <summary>Number of channels C of the vectors reduced.</summary>
    public int Channels { get; }

    /// <summary>Length of a reduction: r coordinates and the residual length.</summary>
    public int Dimensions => Rank + 1;

    /// <summary>Finds up to <paramref name="rank"/> leading directions of a bank of finite values.</summary>
    /// <param name="bank">Patch-major, <paramref name="bankSize"/> rows of <paramref name="channels"/> values.</param>
    /// <param name="bankSize">Number of entries M.</param>
    /// <param name="channels">Number of channels C.</param>
    /// <param name="rank">Directions wanted, 1 ≤ rank ≤ C.</param>
    public static BankProjection Fit(ReadOnlySpan<float> bank, int bankSize, int channels, int rank)
    {
        var mean = new double[channels];
        for (int m = 0; m < bankSize; m++)
        {
            var entry = bank.Slice(m * channels, channels);
            for (int c = 0; c < channels; c++)
                mean[c] += entry[c];
        }
        for (int c = 0; c < channels; c++)
            mean[c] /= bankSize;

        var centred = GC.AllocateUninitializedArray<float>(bankSize * channels);
        for (int m = 0; m < bankSize; m++)
            for (int c = 0; c < channels; c++)
                centred[m * channels + c] = (float)(bank[m * channels + c] - mean[c]);

        // Subspace iteration: Q ← orth(Bᵀ·B·Q) from a seeded random start; Q is [C][r] in the products.
        var random = new Random(Seed);
        var basis = new double[rank * channels];
        for (int i = 0; i < basis.Length; i++)
            basis[i] = random.NextDouble() - 0.5;
        int found = Orthonormalize(basis, rank, channels);
        var q = new float[channels * rank];
        var z = new float[bankSize * rank];
        var y = new float[channels * rank];
        for (int iteration = 0; iteration < SubspaceIterations && found > 0; iteration++)
        {
            for (int j = 0; j < found; j++)
                for (int c = 0; c < channels; c++)
                    q[c * found + j] = (float)basis[j * channels + c];
            PackedGemm.Multiply(bankSize, found, channels, centred, channels, 1, q, found, 1, z, accumulate: false);
            PackedGemm.Multiply(channels, found, bankSize, centred, 1, channels, z, found, 1, y, accumulate: false);
            for (int j = 0; j < found; j++)
                for (int c = 0; c < channels; c++)
                    basis[j * channels + c] = y[c * found + j];
            found = Orthonormalize(basis, found, channels);
        }
        return new BankProjection(mean, basis.AsSpan(0, found * channels).ToArray(), found, channels);
    }

    /// <summary>
    /// Orthonormalises the first <paramref name="count"/> rows in place (modified Gram–Schmidt, twice), dropping the rows
    /// that are numerically in the span of the earlier ones; returns how many remain (packed at the front).
    /// </summary>
    private static int Orthonormalize(double[] rows, int count, int length)
    {
        int kept = 0;
        for (int i = 0; i < count; i++)
        {
            var row = rows.AsSpan(i * length, length);
            double original = Math.Sqrt(TensorPrimitives.Dot<double>(row, row));
            for (int pass = 0; pass < 2; pass++)
            {
                for (int j = 0; j < kept; j++)
                {
                    var previous = rows.AsSpan(j * length, length);
                    double projection = TensorPrimitives.Dot<double>(row, previous);
                    TensorPrimitives.MultiplyAdd(previous, -projection, row, row);
                }
            }
            double norm = Math.Sqrt(TensorPrimitives.Dot<double>(row, row));
            // fp32 products leave about 1e-7 of a row outside the bank's span; a direction that small bounds nothing.
            if (!(norm > 1e-4 * original))
                continue;
            TensorPrimitives.Divide(row, norm, rows.AsSpan(kept * length, length));
            kept++;
        }
        return kept;
    }

    /// <summary>
    /// Writes R(x) for <paramref name="count"/> vectors (row-major, <see cref="Channels"/> values each) as rows of
    /// <see cref="Dimensions"/> values (r coordinates, then the residual length), and their |x − μ|², from fp64 arithmetic.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public unsafe void Reduce(ReadOnlySpan<float> x, int count, Span<float> reduced, Span<double> centredNorms)
    {
        if (x.Length < (long)count * Channels || reduced.Length < (long)count * Dimensions || centredNorms.Length < count)
            throw new ArgumentException($"Expected {count} × {Channels} values in and room for {count} × {Dimensions} and {count} out.");
        // Vᵀx − Vᵀμ by register tiles of 6 vectors × 16 columns (the basis streams from L1 once per tile, not per vector).
        Span<double> coordinates = stackalloc double[VectorsPerTile * ColumnsPerTile];
        Span<double> captured = stackalloc double[VectorsPerTile];   // |Vᵀ(x − μ)|² from the fp64 coordinates
        // The tile's vectors widened to fp64 first, with vector conversions: a scalar conversion per use would merge into
        // the register the previous one broadcast from, and chain every step of the loop behind it.
        var widened = GC.AllocateUninitializedArray<double>(VectorsPerTile * Channels, pinned: true);
        const int Lanes = 8;
        fixed (float* input = x)
        fixed (double* basis = _basisByChannel)
        fixed (double* output = coordinates)
        fixed (double* wide = widened)
        {
            for (int first = 0; first < count; first += VectorsPerTile)
            {
                int vectors = Math.Min(VectorsPerTile, count - first);
                // Missing rows of a last, partial tile repeat its first vector; their results are not used.
                float* r0 = input + (long)first * Channels;
                float* r1 = vectors > 1 ? r0 + Channels : r0, r2 = vectors > 2 ? r0 + 2 * Channels : r0;
                float* r3 = vectors > 3 ? r0 + 3 * Channels : r0, r4 = vectors > 4 ? r0 + 4 * Channels : r0;
                float* r5 = vectors > 5 ? r0 + 5 * Channels : r0;
                Widen(r0, wide, Channels);
                Widen(r1, wide + Channels, Channels);
                Widen(r2, wide + 2 * Channels, Channels);
                Widen(r3, wide + 3 * Channels, Channels);
                Widen(r4, wide + 4 * Channels, Channels);
                Widen(r5, wide + 5 * Channels, Channels);
                double* w0 = wide, w1 = wide + Channels, w2 = wide + 2 * Channels;
                double* w3 = wide + 3 * Channels, w4 = wide + 4 * Channels, w5 = wide + 5 * Channels;
                for (int j0 = 0; j0 < _columns; j0 += ColumnsPerTile)
                {
                    Vector512<double> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default;
                    Vector512<double> a30 = default, a31 = default, a40 = default, a41 = default, a50 = default, a51 = default;
                    double* column = basis + j0;
                    for (int c = 0; c < Channels; c++, column += _columns)
                    {
                        var b0 = Vector512.Load(column);
                        var b1 = Vector512.Load(column + Lanes);
                        var v = Vector512.Create(w0[c]);
                        a00 = Vector512.FusedMultiplyAdd(v, b0, a00); a01 = Vector512.FusedMultiplyAdd(v, b1, a01);
                        v = Vector512.Create(w1[c]);
                        a10 = Vector512.FusedMultiplyAdd(v, b0, a10); a11 = Vector512.FusedMultiplyAdd(v, b1, a11);
                        v = Vector512.Create(w2[c]);
                        a20 = Vector512.FusedMultiplyAdd(v, b0, a20); a21 = Vector512.FusedMultiplyAdd(v, b1, a21);
                        v = Vector512.Create(w3[c]);
                        a30 = Vector512.FusedMultiplyAdd(v, b0, a30); a31 = Vector512.FusedMultiplyAdd(v, b1, a31);
                        v = Vector512.Create(w4[c]);
                        a40 = Vector512.FusedMultiplyAdd(v, b0, a40); a41 = Vector512.FusedMultiplyAdd(v, b1, a41);
                        v = Vector512.Create(w5[c]);
                        a50 = Vector512.FusedMultiplyAdd(v, b0, a50); a51 = Vector512.FusedMultiplyAdd(v, b1, a51);
                    }
                    double* o = output;
                    a00.Store(o); a01.Store(o + 8); o += ColumnsPerTile;
                    a10.Store(o); a11.Store(o + 8); o += ColumnsPerTile;
                    a20.Store(o); a21.Store(o + 8); o += ColumnsPerTile;
                    a30.Store(o); a31.Store(o + 8); o += ColumnsPerTile;
                    a40.Store(o); a41.Store(o + 8); o += ColumnsPerTile;
                    a50.Store(o); a51.Store(o + 8);
                    for (int i = 0; i < vectors; i++)
                    {
                        for (int j = j0; j < Math.Min(Rank, j0 + ColumnsPerTile); j++)
                        {
                            double coordinate = coordinates[i * ColumnsPerTile + j - j0] - _meanCoordinates[j];
                            captured[i] += coordinate * coordinate;
                            reduced[(first + i) * Dimensions + j] = (float)coordinate;
                        }
                    }
                }
                for (int i = 0; i < vectors; i++)
                {
                    int row = first + i;
                    double norm = CentredNormSquared(x.Slice(row * Channels, Channels));
                    reduced[row * Dimensions + Rank] = (float)Math.Sqrt(Math.Max(0, norm - captured[i]));
                    centredNorms[row] = norm;
                    captured[i] = 0;
                }
            }
        }
    }

    /// <summary>Writes <paramref name="count"/> floats as doubles.</summary>
    private static unsafe void Widen(float* source, double* destination, int count)
    {
        int c = 0;
        for (; c <= count - Vector256<float>.Count; c += Vector256<float>.Count)
        {
            var values = Vector256.Load(source + c);
            Vector256.WidenLower(values).Store(destination + c);
            Vector256.WidenUpper(values).Store(destination + c + 4);
        }
        for (; c < count; c++)
            destination[c] = source[c];
    }

    /// <summary>|x − μ|² in fp64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private double CentredNormSquared(ReadOnlySpan<float> x)
    {
        var sum = Vector256<double>.Zero;
        int c = 0;
        for (; c + Vector256<float>.Count <= Channels; c += Vector256<float>.Count)
        {
            var values = Vector256.Create(x.Slice(c, Vector256<float>.Count));
            var low = Vector256.WidenLower(values) - Vector256.Create(_mean.AsSpan(c, 4));
            var high = Vector256.WidenUpper(values) - Vector256.Create(_mean.AsSpan(c + 4, 4));
            sum = Vector256.FusedMultiplyAdd(low, low, sum);
            sum = Vector256.FusedMultiplyAdd(high, high, sum);
        }
        double norm = Vector256.Sum(sum);
        for (; c < Channels; c++)
        {
            double d = x[c] - _mean[c];
            norm += d * d;
        }
        return norm;
    }
}
