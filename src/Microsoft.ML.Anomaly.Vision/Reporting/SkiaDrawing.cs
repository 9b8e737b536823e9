using SkiaSharp;

namespace Microsoft.ML.Anomaly.Vision.Reporting;

/// <summary>
/// SkiaSharp helpers shared by the report renderers. Only calls that exist, and are not obsolete, in both SkiaSharp 2.88
/// (ML.NET 5's image support) and 3.x (ML.NET 6's) are used: text is measured through <see cref="SKFont"/>'s glyphs, never the paint's text settings.
/// </summary>
internal static class SkiaDrawing
{
    private static readonly Lazy<SKTypeface> Typeface = new(ResolveTypeface);

    /// <summary>
    /// A sans-serif typeface when one is installed, else the platform default, or else the first TrueType font found in the usual font
    /// folders (the Linux SkiaSharp build used here does not consult fontconfig).
    /// </summary>
    public static SKTypeface Font => Typeface.Value;

    /// <summary>Width of <paramref name="text"/> drawn with <paramref name="font"/>.</summary>
    public static float Measure(SKFont font, string text)
    {
        var glyphs = new ushort[font.CountGlyphs(text)];
        font.GetGlyphs(text, glyphs);
        return font.MeasureText(glyphs);
    }

    /// <summary>Creates an RGBA surface with the given size.</summary>
    public static SKSurface CreateSurface(int width, int height) =>
        SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul))
        ?? throw new InvalidOperationException($"Could not create a {width}×{height} drawing surface.");

    /// <summary>Writes the surface as a PNG file, creating its folder.</summary>
    public static void SavePng(SKSurface surface, string outputPng)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(outputPng));
        if (!string.IsNullOrEmpty(folder))
            Directory.CreateDirectory(folder);
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100)
            ?? throw new InvalidOperationException($"PNG encoding failed for '{outputPng}'.");
        AtomicFile.Write(outputPng, data.SaveTo);
    }

    private static SKTypeface ResolveTypeface()
    {
        foreach (string family in new[] { "DejaVu Sans", "Liberation Sans", "Arial", "Helvetica", "Segoe UI" })
        {
            var named = SKTypeface.FromFamilyName(family);
            if (named is not null && named.GlyphCount > 0 && string.Equals(named.FamilyName, family, StringComparison.OrdinalIgnoreCase))
                return named;
        }
        var candidate = SKTypeface.Default;
        if (candidate is not null && candidate.GlyphCount > 0)
            return candidate;
        string[] folders =
        [
            "/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "/System/Library/Fonts",
            Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.Windows), "Fonts"),
        ];
        string[] preferred = ["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "arial.ttf", "Helvetica.ttc"];
        foreach (string folder in folders)
        {
            if (string.IsNullOrEmpty(folder) || !Directory.Exists(folder))
                continue;
            IEnumerable<string> files;
            try
            {
                files = Directory.EnumerateFiles(folder, "*.tt?", SearchOption.AllDirectories).ToList();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            foreach (string file in files.OrderBy(f => Array.IndexOf(preferred, Path.GetFileName(f)) is int i && i >= 0 ? i : int.MaxValue))
            {
                var typeface = SKTypeface.FromFile(file);
                if (typeface is not null && typeface.GlyphCount > 0)
                    return typeface;
            }
        }
        return candidate ?? SKTypeface.CreateDefault();
    }
}
