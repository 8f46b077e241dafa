using System.Text;
using Bastion.Policy;

namespace Bastion.Tests.Unit;

/// <summary>
/// A glob's literal pre-check (<see cref="GlobFilter"/>) must never change what the glob's regex decides: random globs
/// and strings (case folds in and out of ASCII, the Kelvin sign, newlines, which `.` and `$` treat specially) judged
/// both ways, and the shapes of the benchmark's rules decided without the regex.
/// </summary>
public sealed class GlobFilterTests
{
    static readonly string[] GlobPieces = ["a", "b", "k", "K", "/", ".", "*", "**", "?", "/**", "\u212A", "é", "\n", "x", ".exe", "/a"];
    static readonly string[] TextPieces = ["a", "A", "b", "k", "K", "/", ".", "\u212A", "é", "É", "\n", "x", ".exe", ".EXE", "/a", "//"];

    static string Make(Random r, string[] pieces, int max)
    {
        var sb = new StringBuilder();
        int n = r.Next(max + 1);
        for (int i = 0; i < n; i++) sb.Append(pieces[r.Next(pieces.Length)]);
        return sb.ToString();
    }

    [Fact]
    public void Random_globs_judge_exactly_as_their_regex()
    {
        var r = new Random(14);
        int decided = 0;
        for (int g = 0; g < 1500; g++)
        {
            var glob = Make(r, GlobPieces, 6);
            if (!Patterns.IsGlob(glob)) glob += "*";
            bool pathAware = r.Next(2) == 0, ignoreCase = r.Next(2) == 0;
            var regex = Patterns.CompileGlob(glob, pathAware, ignoreCase);
            var pattern = new StringPattern(glob, pathAware, ignoreCase);
            var filter = GlobFilter.For(glob, pathAware, ignoreCase);
            for (int t = 0; t < 60; t++)
            {
                var s = Make(r, TextPieces, 6);
                bool expected = regex.IsMatch(s);
                Assert.True(expected == pattern.IsMatch(s), $"glob '{Escape(glob)}' (path-aware {pathAware}, ignore case {ignoreCase}) on '{Escape(s)}': regex says {expected}");
                if (filter?.Match(s) is { } d)
                {
                    decided++;
                    Assert.Equal(expected, d);
                }
            }
        }
        // The pre-check decides a good share by itself (else it would be no use).
        Assert.True(decided > 20_000, $"decided {decided}");
    }

    static string Escape(string s) => s.Replace("\n", "\\n").Replace("\u212A", "<kelvin>");

    [Theory]
    [InlineData("/**/*.exe", "/100b", false)]
    [InlineData("/**/*.php", "/api/x.PHP", null)]
    [InlineData("/**/.git/**", "/100b", false)]
    [InlineData("/admin/**", "/100b", false)]
    [InlineData("/admin/**", "/ADMIN/x", true)]
    [InlineData("/admin/**", "/admin", true)]
    [InlineData("/admin/**", "/administrator", false)]
    [InlineData("/**", "/100b", true)]
    [InlineData("/**", "/a\nb", false)]
    [InlineData("/**", "/ab\n", true)]
    [InlineData("/**", "", true)]
    [InlineData("/api/**", "/100b", false)]
    public void The_benchmark_rules_shapes_are_decided_without_the_regex(string glob, string path, bool? expected)
    {
        var filter = GlobFilter.For(glob, pathAware: true, ignoreCase: true);
        Assert.NotNull(filter);
        Assert.Equal(expected, filter.Match(path));
        Assert.Equal(Patterns.CompileGlob(glob, true, true).IsMatch(path), new StringPattern(glob, true, true).IsMatch(path));
    }
}
