using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Tcp;

public class ExamplesCheckTests
{
    static string Repo()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Bastion.slnx"))) d = d.Parent;
        return d?.FullName ?? throw new DirectoryNotFoundException("repository root");
    }

    [Theory]
    [InlineData("socks5.yaml")]
    [InlineData("tcp.yaml")]
    public async Task Example_passes_bastion_check(string file)
    {
        var r = await Proc.BastionAsync(["check", "-c", Path.Combine(Repo(), "examples", file)]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("ok", r.Stdout);
    }
}
