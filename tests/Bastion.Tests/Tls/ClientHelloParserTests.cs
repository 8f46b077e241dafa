using System.Buffers;
using System.Buffers.Binary;
using Bastion.Gateway.Tls;

namespace Bastion.Tests.Tls;

/// <summary>The ClientHello peek: real hellos from openssl and curl, every prefix, split records, garbage, mutations.</summary>
public sealed class ClientHelloParserTests
{
    static HelloStatus Parse(byte[] b, out ClientHello? hello, out string? error, int max = ClientHelloParser.DefaultMaxSize) =>
        ClientHelloParser.TryParse(new ReadOnlySequence<byte>(b), out hello, out error, max);

    static ClientHello Parsed(byte[] b)
    {
        var status = Parse(b, out var hello, out var error);
        Assert.True(status == HelloStatus.Parsed, $"{status}: {error}");
        return hello!;
    }

    [Fact]
    public async Task Openssl_hello_gives_sni_alpn_and_versions()
    {
        var bytes = await HelloCapture.OpenSslAsync("-servername", "WWW.Example.COM", "-alpn", "h2,http/1.1");
        var h = Parsed(bytes);
        Assert.Equal("www.example.com", h.ServerName);
        Assert.Equal(["h2", "http/1.1"], h.Alpn.ToArray());
        Assert.Contains((ushort)0x0304, h.SupportedVersions);
        Assert.Equal(0x0304, h.MaxVersion);
        Assert.Equal(bytes.Length, h.RecordBytes);
    }

    [Fact]
    public async Task Openssl_tls12_hello_without_sni()
    {
        var bytes = await HelloCapture.OpenSslAsync("-noservername", "-tls1_2");
        var h = Parsed(bytes);
        Assert.Null(h.ServerName);
        Assert.True(h.Alpn.IsEmpty);
        Assert.Equal(0x0303, h.MaxVersion);
    }

    [Fact]
    public async Task Curl_hello_offers_h2_when_asked()
    {
        var bytes = await HelloCapture.CurlAsync("shop.example.net", "--http2");
        var h = Parsed(bytes);
        Assert.Equal("shop.example.net", h.ServerName);
        Assert.Equal(["h2", "http/1.1"], h.Alpn.ToArray());
    }

    [Fact]
    public async Task Every_prefix_of_real_hellos_needs_more()
    {
        foreach (var bytes in new[]
        {
            await HelloCapture.OpenSslAsync("-servername", "a.example", "-alpn", "http/1.1"),
            await HelloCapture.CurlAsync("b.example"),
        })
        {
            for (int i = 0; i < bytes.Length; i++)
            {
                var status = Parse(bytes[..i], out _, out var error);
                Assert.True(status == HelloStatus.NeedMore, $"prefix of {i}/{bytes.Length} bytes: {status} {error}");
            }
            Parsed(bytes);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(100)]
    public async Task Hello_split_across_many_records_parses_and_its_prefixes_need_more(int fragment)
    {
        var one = await HelloCapture.OpenSslAsync("-servername", "split.example", "-alpn", "h2");
        var split = Refragment(one, fragment);
        Assert.True(split.Length > one.Length);
        var h = Parsed(split);
        Assert.Equal("split.example", h.ServerName);
        Assert.Equal(split.Length, h.RecordBytes);
        for (int i = 0; i < split.Length; i += Math.Max(1, fragment / 3))
            Assert.Equal(HelloStatus.NeedMore, Parse(split[..i], out _, out _));
    }

    [Fact]
    public async Task Hello_split_over_segments_of_a_sequence_parses()
    {
        var bytes = await HelloCapture.OpenSslAsync("-servername", "seg.example");
        var seq = Segmented(bytes, 13);
        Assert.Equal(HelloStatus.Parsed, ClientHelloParser.TryParse(seq, out var h, out _));
        Assert.Equal("seg.example", h!.ServerName);
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("SSH-2.0-OpenSSH_9.2\r\n")]
    [InlineData("\u0080\u0001")]
    public void Other_protocols_are_not_tls(string text)
    {
        var bytes = System.Text.Encoding.Latin1.GetBytes(text);
        Assert.Equal(HelloStatus.NotTls, Parse(bytes, out _, out var error));
        Assert.NotNull(error);
        Assert.Equal(HelloStatus.NotTls, Parse(bytes[..1], out _, out _));
    }

    [Fact]
    public void Garbage_after_a_handshake_byte_is_malformed()
    {
        Assert.Equal(HelloStatus.Malformed, Parse([0x16, 0x09], out _, out _));
        Assert.Equal(HelloStatus.Malformed, Parse([0x16, 0x03, 0x09], out _, out _));
        Assert.Equal(HelloStatus.Malformed, Parse([0x16, 0x03, 0x01, 0x00, 0x00], out _, out var e1));
        Assert.Contains("empty", e1);
        Assert.Equal(HelloStatus.Malformed, Parse([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00], out _, out var e2));
        Assert.Contains("not ClientHello", e2);
        var rng = new Random(12);
        for (int i = 0; i < 200; i++)
        {
            var g = new byte[rng.Next(5, 600)];
            rng.NextBytes(g);
            g[0] = 0x16;
            g[1] = 3;
            g[2] = 1;
            BinaryPrimitives.WriteUInt16BigEndian(g.AsSpan(3), (ushort)(g.Length - 5));
            if (g.Length > 5) g[5] = 1;
            var s = Parse(g, out _, out _);
            Assert.True(s is HelloStatus.Malformed or HelloStatus.NeedMore, $"{s}");
        }
    }

    [Fact]
    public void A_hello_larger_than_the_bound_is_malformed_not_buffered_forever()
    {
        // Records of handshake data that announce a 64 KiB ClientHello.
        var big = new byte[5 + 4];
        big[0] = 0x16; big[1] = 3; big[2] = 1;
        BinaryPrimitives.WriteUInt16BigEndian(big.AsSpan(3), 4);
        big[5] = 1; big[6] = 0x01; big[7] = 0x00; big[8] = 0x00;
        Assert.Equal(HelloStatus.Malformed, Parse(big, out _, out var e, max: 16 * 1024));
        Assert.Contains("limit", e);
        // A hello within the bound cut into tiny records: the record headers push it past the bound, and it stops there.
        var records = new List<byte>(Record([1, 0, 0x30, 0]));
        for (int i = 0; i < 1300; i++) records.AddRange(Record(new byte[10]));
        Assert.Equal(HelloStatus.Malformed, Parse([.. records], out _, out var e2, max: 16 * 1024));
        Assert.Contains("limit", e2);
    }

    [Fact]
    public async Task Duplicate_extensions_and_bad_names_are_malformed()
    {
        var bytes = await HelloCapture.OpenSslAsync("-servername", "dup.example");
        var h = Parsed(bytes);
        Assert.Equal("dup.example", h.ServerName);
        // Rename the SNI to something with a space and a NUL: refused.
        foreach (var evil in new[] { "dup.exampl ", "dup.exampl\0", "dup..xample", "dup.exampl/" })
        {
            var copy = (byte[])bytes.Clone();
            int at = IndexOf(copy, "dup.example"u8);
            System.Text.Encoding.Latin1.GetBytes(evil).CopyTo(copy, at);
            Assert.Equal(HelloStatus.Malformed, Parse(copy, out _, out var error));
            Assert.Contains("server name", error);
        }
    }

    [Fact]
    public async Task Random_mutations_never_throw_and_never_claim_more_than_was_there()
    {
        var bytes = await HelloCapture.OpenSslAsync("-servername", "mut.example", "-alpn", "h2,http/1.1");
        var rng = new Random(7);
        var seen = new HashSet<HelloStatus>();
        for (int i = 0; i < 5000; i++)
        {
            var m = (byte[])bytes.Clone();
            int flips = rng.Next(1, 4);
            for (int k = 0; k < flips; k++) m[rng.Next(m.Length)] = (byte)rng.Next(256);
            if (rng.Next(4) == 0) m = m[..rng.Next(m.Length)];
            var s = Parse(m, out var h, out var error);
            seen.Add(s);
            if (s == HelloStatus.Parsed) Assert.True(h!.RecordBytes <= m.Length);
            else if (s != HelloStatus.NeedMore) Assert.NotNull(error);
        }
        Assert.Contains(HelloStatus.Malformed, seen);
    }

    static int IndexOf(byte[] hay, ReadOnlySpan<byte> needle) => hay.AsSpan().IndexOf(needle);

    static byte[] Record(byte[] payload)
    {
        var r = new byte[5 + payload.Length];
        r[0] = 0x16; r[1] = 3; r[2] = 1;
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(3), (ushort)payload.Length);
        payload.CopyTo(r, 5);
        return r;
    }

    /// <summary>The same handshake bytes, re-cut into records of at most <paramref name="size"/> bytes.</summary>
    static byte[] Refragment(byte[] hello, int size)
    {
        var handshake = new List<byte>();
        int pos = 0;
        while (pos < hello.Length)
        {
            int len = BinaryPrimitives.ReadUInt16BigEndian(hello.AsSpan(pos + 3));
            handshake.AddRange(hello.AsSpan(pos + 5, len));
            pos += 5 + len;
        }
        var outp = new List<byte>();
        var hs = handshake.ToArray();
        for (int i = 0; i < hs.Length; i += size)
            outp.AddRange(Record(hs[i..Math.Min(hs.Length, i + size)]));
        return [.. outp];
    }

    static ReadOnlySequence<byte> Segmented(byte[] data, int size)
    {
        Segment? first = null, last = null;
        for (int i = 0; i < data.Length; i += size)
        {
            var s = new Segment(data.AsMemory(i, Math.Min(size, data.Length - i)));
            if (first is null) first = last = s;
            else last = last!.Append(s);
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> m) => Memory = m;

        public Segment Append(Segment next)
        {
            next.RunningIndex = RunningIndex + Memory.Length;
            Next = next;
            return next;
        }
    }
}
