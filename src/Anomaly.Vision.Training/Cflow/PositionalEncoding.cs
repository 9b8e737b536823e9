namespace Anomaly.Vision.Training;

/// <summary>
/// The 2-D sinusoidal position code that conditions CFlow's normalizing flows, laid out as anomalib's CFlow
/// lays it out: the first half of the channels encodes the column, the second half the row; within each
/// half, even channels hold sines and odd channels cosines of the position times a geometric series of
/// frequencies <c>exp(-2k·ln(10⁴)/(P/2))</c>, k = 0 … P/4 − 1.
/// </summary>
internal static class PositionalEncoding
{
    /// <summary>Builds the code for a <paramref name="height"/>×<paramref name="width"/> grid.</summary>
    /// <param name="conditionSize">Number of channels P; a positive multiple of 4.</param>
    /// <param name="height">Grid height.</param>
    /// <param name="width">Grid width.</param>
    /// <returns>P×H×W values in CHW order.</returns>
    /// <exception cref="ArgumentException"><paramref name="conditionSize"/> is not a positive multiple of 4, or the grid is empty.</exception>
    public static float[] Create(int conditionSize, int height, int width)
    {
        Validate(conditionSize);
        if (height <= 0)
            throw new ArgumentException($"The grid height must be positive (got {height}).", nameof(height));
        if (width <= 0)
            throw new ArgumentException($"The grid width must be positive (got {width}).", nameof(width));

        int half = conditionSize / 2;
        int plane = height * width;
        var code = new float[conditionSize * plane];
        for (int k = 0; k < half / 2; k++)
        {
            double frequency = Math.Exp(2 * k * -(Math.Log(1e4) / half));
            Span<float> sinW = code.AsSpan((2 * k) * plane, plane);
            Span<float> cosW = code.AsSpan((2 * k + 1) * plane, plane);
            Span<float> sinH = code.AsSpan((half + 2 * k) * plane, plane);
            Span<float> cosH = code.AsSpan((half + 2 * k + 1) * plane, plane);
            for (int y = 0; y < height; y++)
            {
                float sy = (float)Math.Sin(y * frequency), cy = (float)Math.Cos(y * frequency);
                for (int x = 0; x < width; x++)
                {
                    int i = y * width + x;
                    sinW[i] = (float)Math.Sin(x * frequency);
                    cosW[i] = (float)Math.Cos(x * frequency);
                    sinH[i] = sy;
                    cosH[i] = cy;
                }
            }
        }
        return code;
    }

    /// <summary>Throws unless <paramref name="conditionSize"/> is a positive multiple of 4.</summary>
    /// <param name="conditionSize">The condition vector size to check.</param>
    /// <param name="parameterName">The parameter name the exception reports.</param>
    public static void Validate(int conditionSize, string parameterName = "conditionSize")
    {
        if (conditionSize <= 0 || conditionSize % 4 != 0)
            throw new ArgumentException(
                $"The condition vector size must be a positive multiple of 4 (half of it encodes the row, half the column, each as sine/cosine pairs); got {conditionSize}.",
                parameterName);
    }
}
