using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Smtp;

/// <summary>`check` and `explain` for smtp listeners, through the real command line.</summary>
public class SmtpConfigTests
{
    static string Example => Path.Combine(Repo.Root, "examples", "smtp.yaml");

    [Theory]
    [InlineData("RCPT TO:<someone@elsewhere.example>", 1, "no-relay")]
    [InlineData("RCPT TO:<bob@Example.COM>", 0, "our-recipients")]
    [InlineData("RCPT TO:<bob@mail.example.com>", 1, "no-relay")]
    [InlineData("MAIL FROM:<x@spam.example>", 1, "blocked-sender")]
    [InlineData("MAIL FROM:<x@friends.example> SIZE=1000", 0, "envelope")]
    public async Task Explain_maps_smtp_requests_as_the_session_does(string request, int exit, string rule)
    {
        var r = await Proc.BastionAsync(["explain", "-c", Example, "--listener", "mx", request]);
        Assert.True(r.ExitCode == exit, r.ToString());
        Assert.Contains($"(rule {rule}", r.Stdout);
    }

    [Fact]
    public async Task Check_refuses_what_the_gateway_cannot_honour()
    {
        var dir = Scratch.NewDir("smtp-check");
        var file = Path.Combine(dir, "bad.yaml");
        await File.WriteAllTextAsync(file, """
            listeners:
              - name: mx
                type: smtp
                listen: 127.0.0.1:0
                upstream: nowhere
                policy: p
                smtp:
                  extensions: [PIPELINING, DSN, STARTTLS]
                  bare_newline: sometimes
            policies:
              p: { default: deny, rules: [] }
            """);
        var r = await Proc.BastionAsync(["check", "-c", file]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("'DSN' is not an extension the gateway can honour", r.Stderr + r.Stdout);
        Assert.Contains("bare_newline must be refuse or normalize", r.Stderr + r.Stdout);
        Assert.Contains("upstream 'nowhere' is neither host:port nor a group", r.Stderr + r.Stdout);
        Assert.Contains("lists STARTTLS but smtp.tls names no certificate", r.Stderr + r.Stdout);
    }
}
