using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Cli;

/// <summary>Every examples/*.yaml passes `bastion check`, so that the examples stay valid as the code moves.</summary>
public class ExampleConfigTests
{
    public static TheoryData<string> Examples()
    {
        var data = new TheoryData<string>();
        var dir = Path.Combine(Repo.Root, "examples");
        if (Directory.Exists(dir))
            foreach (var f in Directory.GetFiles(dir, "*.yaml").Order(StringComparer.Ordinal))
                data.Add(Path.GetFileName(f));
        return data;
    }

    [Fact]
    public void There_are_examples() => Assert.NotEmpty(Examples());

    [Theory]
    [MemberData(nameof(Examples))]
    public async Task Example_passes_check(string name)
    {
        var r = await Proc.BastionAsync(["check", "-c", Path.Combine(Repo.Root, "examples", name)]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.DoesNotContain("warning:", r.Stdout);
        Assert.EndsWith("ok", r.Stdout.Trim());
    }
}
