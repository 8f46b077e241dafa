using Bastion.Configuration;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Cli;

/// <summary>What a newcomer meets first: the man page against the program, and the lines a broken or watched start prints.</summary>
public sealed class WalkthroughTests
{
    [Fact]
    public async Task The_man_page_names_every_command_of_help_and_every_listener_type()
    {
        var help = await Proc.BastionAsync(["--help"]);
        Assert.Equal(0, help.ExitCode);
        var man = await File.ReadAllTextAsync(Path.Combine(Repo.Root, "docs", "bastion.1.md"));
        // "  bastion ca init DIR ..." in --help: the words before the first argument or option.
        var commands = help.Stdout.Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.StartsWith("bastion ", StringComparison.Ordinal) && !l.StartsWith("bastion --", StringComparison.Ordinal))
            .Select(l => string.Join(' ', l.Split(' ').Skip(1).TakeWhile(w => w.Length > 0 && char.IsLower(w[0]))))
            .Where(c => c.Length > 0) // the title line, "bastion — ..."
            .ToList();
        Assert.Contains("ca init", commands);
        foreach (var c in commands)
            Assert.True(man.Contains($"**bastion {c}**", StringComparison.Ordinal), $"SYNOPSIS lacks 'bastion {c}'");
        foreach (var t in Enum.GetValues<ListenerType>())
            Assert.True(man.Contains($"*{ListenerTypes.Name(t)}*", StringComparison.Ordinal), $"DESCRIPTION lacks listener type {ListenerTypes.Name(t)}");
    }

    [Fact]
    public async Task An_unknown_listener_type_is_one_error_not_also_no_listeners()
    {
        var dir = Scratch.NewDir("walk");
        var path = Path.Combine(dir, "bastion.yaml");
        await File.WriteAllTextAsync(path, "listeners:\n  - { name: web, type: gopher, listen: 127.0.0.1:0 }\n");
        var check = await Proc.BastionAsync(["check", "-c", path]);
        Assert.True(check.ExitCode == 2, check.ToString());
        Assert.Equal([$"{path}:2:24: unknown listener type 'gopher' (expected http-proxy, http-reverse, ftp, smtp, socks5 or tcp)"],
            check.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        var run = await Proc.BastionAsync(["run", "--no-watch", "-c", path]);
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.DoesNotContain("no listeners", run.Stderr);
        Assert.DoesNotContain("   at ", run.Stderr);
        Assert.StartsWith($"{path}:2:24: unknown listener type 'gopher'", run.Stderr);

        // A file that really has none still says so.
        await File.WriteAllTextAsync(path, "listeners: []\n");
        check = await Proc.BastionAsync(["check", "-c", path]);
        Assert.Contains("no listeners: nothing to run", check.Stdout);
    }

    [Fact]
    public async Task A_flow_mapping_left_open_is_a_syntax_error_not_a_crash()
    {
        // YamlDotNet throws InvalidOperationException (not YamlException) here: `run` died with a stack trace, exit 134.
        var path = Path.Combine(Scratch.NewDir("walk"), "bastion.yaml");
        await File.WriteAllTextAsync(path, "listeners:\n  - { name: web, type: http-proxy\n  listen: [\n");
        var check = await Proc.BastionAsync(["check", "-c", path]);
        Assert.True(check.ExitCode == 2, check.ToString());
        Assert.Equal([$"{path}:2:3: YAML syntax: cannot parse past here (an unclosed '{{', '[' or quote?)"],
            check.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var run = await Proc.BastionAsync(["run", "--no-watch", "-c", path]);
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.DoesNotContain("   at ", run.Stderr);
        Assert.StartsWith($"{path}:2:3: YAML syntax: ", run.Stderr);
    }

    [Fact]
    public async Task A_folder_given_as_the_config_is_named_a_folder_not_a_permission_problem()
    {
        var path = Scratch.NewDir("walk");
        foreach (var command in new[] { "check", "run" })
        {
            var r = await Proc.BastionAsync([command, "-c", path]);
            Assert.True(r.ExitCode == 2, r.ToString());
            Assert.Contains($"{path}:1:1: cannot read configuration: it is a folder, not a file", r.Stdout + r.Stderr);
            Assert.DoesNotContain("denied", r.Stdout + r.Stderr);
        }
    }

    [Fact]
    public async Task Run_with_no_watch_does_not_claim_that_a_change_to_the_file_reloads()
    {
        var dir = Scratch.NewDir("walk");
        var path = Path.Combine(dir, "bastion.yaml");
        await File.WriteAllTextAsync(path, $"logging: {{ access: {Path.Combine(dir, "access.log")} }}\nlisteners: [{{ name: web, type: http-proxy, listen: 127.0.0.1:0 }}]\n");
        foreach (var (args, expected) in new[]
        {
            (new[] { "run", "--no-watch", "-c", path }, "SIGHUP reloads (--no-watch), SIGTERM stops"),
            (["run", "-c", path], "SIGHUP or a change to the file reloads, SIGTERM stops"),
        })
        {
            await using var p = Proc.Start("dotnet", [Proc.BastionDll, .. args]);
            await p.WaitForOutputAsync(" running (", TimeSpan.FromSeconds(30));
            var line = p.Output.Split('\n').Single(l => l.Contains(" running (", StringComparison.Ordinal));
            Assert.EndsWith(expected, line.TrimEnd());
        }
    }
}
