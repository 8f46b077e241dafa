using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Ftp;

/// <summary>lftp and Python's ftplib (plain and FTP_TLS) through the gateway; FTPS on either leg.</summary>
[Collection("ftp")]
public sealed class FtpClientsTests(FtpFixture f)
{
    static Task<ProcResult> Lftp(int port, string commands) =>
        Proc.RunAsync("lftp", ["-c", $"set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes; open -u alice,secret ftp://127.0.0.1:{port}; {commands}"],
            TimeSpan.FromSeconds(60));

    [Fact]
    public async Task Lftp_mirrors_a_tree_both_ways_and_resumes()
    {
        var dir = Scratch.NewDir("lftp");
        var r = await Lftp(f.Port("plain"), $"mirror /pub/tree {dir}/down");
        Assert.True(r.ExitCode == 0, r.ToString());
        foreach (var rel in new[] { "x.txt", "sub/y.txt", "sub/z.bin" })
            Assert.Equal(FtpFixture.Sha(await File.ReadAllBytesAsync(Path.Combine(f.Root, "pub", "tree", rel))),
                FtpFixture.Sha(await File.ReadAllBytesAsync(Path.Combine(dir, "down", rel))));

        r = await Lftp(f.Port("active"), $"mirror -R {dir}/down /up/mirrored");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(FtpFixture.Sha(await File.ReadAllBytesAsync(Path.Combine(f.Root, "pub", "tree", "sub", "z.bin"))),
            FtpFixture.Sha(await File.ReadAllBytesAsync(Path.Combine(f.Root, "up", "mirrored", "sub", "z.bin"))));

        // Resume: a partial file is completed with REST.
        var part = Path.Combine(dir, "big.bin");
        await File.WriteAllBytesAsync(part, f.Big[..700_000]);
        r = await Lftp(f.Port("plain"), $"get -c /pub/big.bin -o {part}");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(FtpFixture.Sha(f.Big), FtpFixture.Sha(await File.ReadAllBytesAsync(part)));
        var t = await f.Gateway.WaitForLogAsync(l => l.Str("event") == "transfer" && l.Str("request") == "RETR /pub/big.bin"
            && l.Num("bytes_out") == f.Big.Length - 700_000);
        Assert.Equal(226, t.Num("status"));
    }

    [Fact]
    public async Task Ftplib_FTP_TLS_to_the_gateway_in_front_of_a_plain_server()
    {
        var py = await Proc.RunAsync("/usr/bin/python3", ["-c", $$"""
            import ftplib, ssl, io, hashlib
            ctx = ssl._create_unverified_context()
            for passive in (True, False):
                f = ftplib.FTP_TLS(context=ctx, timeout=15)
                f.connect('127.0.0.1', {{f.Port("ftps")}})
                f.login('alice', 'secret')
                f.prot_p()
                f.set_pasv(passive)
                b = io.BytesIO(); f.retrbinary('RETR /pub/big.bin', b.write)
                f.storbinary('STOR /up/tls-%s.bin' % passive, io.BytesIO(b.getvalue()))
                names = sorted(n for n, _ in f.mlsd('/pub/tree'))
                print(hashlib.sha256(b.getvalue()).hexdigest(), type(f.sock).__name__, names)
                f.quit()
            """]);
        Assert.True(py.ExitCode == 0, py.ToString());
        var lines = py.Stdout.Trim().Split('\n');
        Assert.Equal(2, lines.Length);
        foreach (var l in lines) Assert.Equal($"{FtpFixture.Sha(f.Big)} SSLSocket ['sub', 'x.txt']", l);
        Assert.Equal(FtpFixture.Sha(f.Big), FtpFixture.Sha(await File.ReadAllBytesAsync(Path.Combine(f.Root, "up", "tls-False.bin"))));
    }

    [Fact]
    public async Task Curl_with_ssl_reqd_and_a_listener_that_requires_TLS()
    {
        var r = await Proc.CurlAsync("--ssl-reqd", "-k", f.Url("ftps", "/pub/a.txt"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("hello\n", r.Stdout);
        r = await Proc.CurlAsync("--ssl-reqd", "-k", f.Url("required", "/pub/big.bin"), "-o", "/dev/null", "-w", "%{size_download}");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal($"{f.Big.Length}", r.Stdout);

        // client_tls: required: no USER before AUTH TLS, no data without PROT P.
        await using var c = await FtpControl.ConnectAsync(f.Port("required"));
        var (code, text) = await c.CommandAsync("USER alice");
        Assert.Equal(530, code);
        Assert.Contains("AUTH TLS", text);
        var feat = await c.CommandAsync("FEAT");
        Assert.Contains(" AUTH TLS", feat.Text);
        Assert.Contains(" PROT", feat.Text);
        Assert.Equal(503, (await c.CommandAsync("PBSZ 0")).Code);
        Assert.Equal(533, (await c.CommandAsync("CCC")).Code);
    }

    [Fact]
    public async Task Bytes_sent_behind_AUTH_TLS_are_never_read_as_commands()
    {
        await using var c = await FtpControl.ConnectAsync(f.Port("ftps"));
        // CVE-2011-0411: a command injected in plaintext behind AUTH must not run inside the TLS session.
        await File.WriteAllTextAsync(Path.Combine(f.Root, "up", "x"), "x");
        await c.SendAsync("AUTH TLS\r\nDELE /up/x\r\n");
        Assert.Equal(234, (await c.ReadReplyAsync()).Code);
        await using var tls = new System.Net.Security.SslStream(new System.Net.Sockets.NetworkStream(c.Socket), false, (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync("localhost");
        await tls.WriteAsync("NOOP\r\n"u8.ToArray());
        var buf = new byte[256];
        int n = await tls.ReadAsync(buf);
        Assert.StartsWith("200 ", System.Text.Encoding.ASCII.GetString(buf, 0, n));
        Assert.True(File.Exists(Path.Combine(f.Root, "up", "x")));
        var line = await f.Gateway.WaitForLogAsync(l => l.Str("listener") == "ftps" && l.Str("request") == "AUTH TLS"
            && l.Str("reason")?.Contains("discarded", StringComparison.Ordinal) == true);
        Assert.Equal(234, line.Num("status"));
    }

    [Fact]
    public async Task Plain_clients_reach_a_TLS_only_server_through_upstream_tls()
    {
        foreach (var mode in new[] { "", "-P" })
        {
            string[] args = mode == "" ? [] : ["-P", "-"];
            var r = await Proc.CurlAsync([.. args, f.Url("uptls", "/pub/big.bin"), "-o", "/dev/null", "-w", "%{size_download}"]);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal($"{f.Big.Length}", r.Stdout);
        }
        var src = Path.Combine(Scratch.NewDir("uptls"), "s.txt");
        await File.WriteAllTextAsync(src, "over tls to the server");
        var up = await Proc.CurlAsync("-T", src, f.Url("uptls", "/up/uptls.txt"));
        Assert.True(up.ExitCode == 0, up.ToString());
        Assert.Equal("over tls to the server", await File.ReadAllTextAsync(Path.Combine(f.Root, "up", "uptls.txt")));
    }
}
