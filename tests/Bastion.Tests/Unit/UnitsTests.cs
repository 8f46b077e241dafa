using Bastion.Configuration;

namespace Bastion.Tests.Unit;

public class UnitsTests
{
    [Theory]
    [InlineData("500ms", 500)]
    [InlineData("30s", 30_000)]
    [InlineData("30", 30_000)]
    [InlineData("5m", 300_000)]
    [InlineData("1.5s", 1_500)]
    [InlineData("2h", 7_200_000)]
    [InlineData("1d", 86_400_000)]
    [InlineData(" 10 s ", 10_000)]
    public void Durations(string text, long ms)
    {
        Assert.True(Units.TryParseDuration(text, out var d));
        Assert.Equal(TimeSpan.FromMilliseconds(ms), d);
    }

    [Theory]
    [InlineData("")]
    [InlineData("s")]
    [InlineData("5 minutes")]
    [InlineData("-1s")]
    [InlineData("5S")]
    [InlineData("1w")]
    public void Bad_durations(string text) => Assert.False(Units.TryParseDuration(text, out _));

    [Theory]
    [InlineData("512", 512)]
    [InlineData("64KiB", 65_536)]
    [InlineData("10MiB", 10L << 20)]
    [InlineData("1GiB", 1L << 30)]
    [InlineData("2TiB", 2L << 40)]
    [InlineData("10KB", 10_000)]
    [InlineData("10kb", 10_000)]
    [InlineData("1.5MiB", 1_572_864)]
    [InlineData("3 MB", 3_000_000)]
    [InlineData("7B", 7)]
    public void Sizes(string text, long bytes)
    {
        Assert.True(Units.TryParseSize(text, out var n));
        Assert.Equal(bytes, n);
    }

    [Theory]
    [InlineData("")]
    [InlineData("MiB")]
    [InlineData("10 PB")]
    [InlineData("-5")]
    [InlineData("ten")]
    public void Bad_sizes(string text) => Assert.False(Units.TryParseSize(text, out _));

    [Fact]
    public void Limits_parse_with_defaults()
    {
        var rt = new ConfigFixture().BuildOk("""
            listeners:
              - name: a
                type: http-proxy
                listen: 127.0.0.1:0
                policy: p
                limits: { idle_timeout: 500ms, max_request_body: 1MiB, rate: 600/m }
              - name: b
                type: http-proxy
                listen: 127.0.0.1:0
                policy: p
            policies:
              p: { rules: [{ allow: {} }] }
            """);
        var a = rt.Config.Listeners[0].Limits;
        Assert.Equal(TimeSpan.FromMilliseconds(500), a.IdleTimeout);
        Assert.Equal(1L << 20, a.MaxRequestBody);
        Assert.Equal(10, a.Rate);
        Assert.Equal(10, a.Burst);                           // burst defaults to one second of rate
        Assert.Equal(Limits.Default.MaxConnections, a.MaxConnections);
        Assert.Equal(Limits.Default, rt.Config.Listeners[1].Limits);
        Assert.Equal(10_000, Limits.Default.MaxConnections);
        Assert.Equal(TimeSpan.FromSeconds(60), Limits.Default.IdleTimeout);
        Assert.Equal(100L << 20, Limits.Default.MaxRequestBody);
    }
}
