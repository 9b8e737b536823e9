using Microsoft.ML.Anomaly.Vision.Reporting;

namespace Microsoft.ML.Anomaly.Vision.Tests.Evaluation;

[TestClass]
public sealed class AnomalyReportTests
{
    [TestMethod]
    public void OverlayHasMapSizeHotDefectAndContour()
    {
        string folder = EvaluationTestImages.NewFolder();
        try
        {
            // 64×64 mid-grey image; 32×32 map, high (1) in the block rows 8..23, cols 8..23, low (0) elsewhere.
            string image = EvaluationTestImages.WritePng(Path.Combine(folder, "img.png"), 64, 64, (_, _) => (128, 128, 128));
            string mask = EvaluationTestImages.WritePng(Path.Combine(folder, "mask.png"), 64, 64,
                (y, x) => y >= 16 && y < 48 && x >= 16 && x < 48 ? ((byte)255, (byte)255, (byte)255) : ((byte)0, (byte)0, (byte)0));
            var map = new float[32 * 32];
            for (int y = 8; y < 24; y++)
                for (int x = 8; x < 24; x++)
                    map[(y * 32) + x] = 1f;
            string output = Path.Combine(folder, "out", "overlay.png");
            AnomalyReport.WriteOverlay(image, map, 32, 32, 0.75f, mask, 0f, 1.2f, output);

            using var png = EvaluationTestImages.ReadPng(output);
            Assert.AreEqual(32, png.Width);
            Assert.AreEqual(32, png.Height);
            var inside = png.GetPixel(16, 16);   // high map, inside the mask contour
            var outside = png.GetPixel(28, 28);  // low map, outside the mask
            // Hot (jet 1/1.2 ≈ red) blended 0.4 over grey: red dominates; cold (dark blue): blue dominates.
            Assert.IsTrue(inside.Red > inside.Blue + 60, $"inside {inside}");
            Assert.IsTrue(outside.Blue > outside.Red + 30, $"outside {outside}");
            // Expected blends: inside r = 0.6·128 + 0.4·jet(0.833).r; jet(0.833) = (1, 0.17, 0) → (255, 42, 0).
            Assert.AreEqual(179, inside.Red, 1);
            Assert.AreEqual(94, inside.Green, 1);
            Assert.AreEqual(77, inside.Blue, 1);
            // The mask border (map pixel 8 = image pixel 16) is drawn white.
            var contour = png.GetPixel(8, 20);
            Assert.AreEqual((byte)255, contour.Red);
            Assert.AreEqual((byte)255, contour.Green);
            Assert.AreEqual((byte)255, contour.Blue);
        }
        finally
        {
            Directory.Delete(folder, true);
        }
    }

    [TestMethod]
    public void OverlayRejectsBadInput()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() =>
            AnomalyReport.WriteOverlay("x.png", new float[5], 2, 3, 0f, null, 0f, 1f, "o.png"));
        Assert.AreEqual("map", e.ParamName);
        Assert.ThrowsExactly<ArgumentException>(() =>
            AnomalyReport.WriteOverlay("x.png", new float[6], 2, 3, 0f, null, 1f, 1f, "o.png"));
        var missing = Assert.ThrowsExactly<FileNotFoundException>(() =>
            AnomalyReport.WriteOverlay("/nonexistent/x.png", new float[6], 2, 3, 0f, null, 0f, 1f, "o.png"));
        StringAssert.Contains(missing.Message, "/nonexistent/x.png");
    }

    [TestMethod]
    public void JetGoesFromBlueToRed()
    {
        Assert.AreEqual(((byte)0, (byte)0, (byte)128), AnomalyReport.Jet(0));
        Assert.AreEqual(((byte)128, (byte)255, (byte)128), AnomalyReport.Jet(0.5));
        Assert.AreEqual(((byte)128, (byte)0, (byte)0), AnomalyReport.Jet(1));
    }

    [TestMethod]
    public void RocPngAndHtmlReport()
    {
        string folder = EvaluationTestImages.NewFolder();
        try
        {
            string roc = Path.Combine(folder, "roc.png");
            AnomalyReport.WriteRocCurve(new Dictionary<string, (float[], bool[])>
            {
                ["CFA"] = ([0.1f, 0.4f, 0.35f, 0.8f], [false, false, true, true]),
                ["DFM"] = ([0.5f, 0.5f, 0.2f, 0.9f], [true, false, false, true]),
            }, roc, 400, 300);
            using (var png = EvaluationTestImages.ReadPng(roc))
            {
                Assert.AreEqual(400, png.Width);
                Assert.AreEqual(300, png.Height);
            }

            string overlay = EvaluationTestImages.WritePng(Path.Combine(folder, "maps", "a b.png"), 4, 4, (_, _) => (1, 2, 3));
            string html = Path.Combine(folder, "report.html");
            var metrics = new Dictionary<string, ImageAnomalyMetrics>
            {
                ["CFA"] = new() { ImageAuroc = 0.98765, ImageF1Max = 0.9, ImageF1Threshold = 1.5, PixelAuroc = 0.97, Aupro = 0.912345, GoodImages = 3, AnomalousImages = 4 },
                ["DFM <nll>"] = new() { ImageAuroc = 0.5 },
            };
            AnomalyReport.WriteHtml(html, metrics, roc, [("CFA", overlay, "broken_large/000.png score 1.23")]);
            string text = File.ReadAllText(html);
            StringAssert.Contains(text, "<td>CFA</td><td>0.9877</td><td>0.9000</td><td>1.5000</td><td>0.9700</td>");
            StringAssert.Contains(text, "0.9123");
            StringAssert.Contains(text, "3 / 4");
            StringAssert.Contains(text, "DFM &lt;nll&gt;");
            StringAssert.Contains(text, "src=\"roc.png\"");
            StringAssert.Contains(text, "href=\"maps/a b.png\"");
            StringAssert.Contains(text, "broken_large/000.png score 1.23");
        }
        finally
        {
            Directory.Delete(folder, true);
        }
    }

    [TestMethod]
    public void RocRejectsSingleClassCurve()
    {
        var e = Assert.ThrowsExactly<ArgumentException>(() => AnomalyReport.WriteRocCurve(
            new Dictionary<string, (float[], bool[])> { ["CFA"] = ([0.1f], [true]) }, Path.Combine(Path.GetTempPath(), "never.png")));
        StringAssert.Contains(e.Message, "'CFA'");
    }
}
