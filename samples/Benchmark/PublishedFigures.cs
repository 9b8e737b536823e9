namespace AnomalyVision.Samples.Benchmark;

/// <summary>One published result: anomalib's figure for a category and algorithm, with the backbone it was measured with.</summary>
internal sealed record PublishedFigure(string Backbone, double? ImageAuroc, double? PixelAuroc, double? Aupro, double? ImageF1);

/// <summary>
/// anomalib's published MVTec AD figures (256×256), from its model READMEs (src/anomalib/models/image/{cfa,dfm,cflow}/README.md),
/// for the categories this repository has been measured on. The ResNet-18 row is used where anomalib publishes one;
/// CFlow is published with Wide ResNet-50 only, so its row compares across backbones.
/// </summary>
internal static class PublishedFigures
{
    private static readonly Dictionary<(string Category, string Algorithm), PublishedFigure> Figures = new()
    {
        [("bottle", "cfa")] = new("ResNet-18", 0.991, 0.986, 0.940, 0.983),
        [("bottle", "dfm-fre")] = new("ResNet-18", 1.000, null, null, 1.000),
        [("bottle", "cflow")] = new("Wide ResNet-50", 1.000, 0.981, null, 1.000),
    };

    /// <summary>The published figure, or null when none is known here.</summary>
    public static PublishedFigure? Find(string category, string algorithm) => Figures.GetValueOrDefault((category, algorithm));
}
